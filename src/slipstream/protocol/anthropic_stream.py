"""Anthropic Messages stream events ⇄ OpenAI chat.completion.chunk objects, both ways.

Anthropic streams typed events (message_start, content_block_start/delta/stop,
message_delta, message_stop, ping, error) where each content block has an index; OpenAI
streams flat chunks where tool calls carry their own index. Each translator is a small state
machine fed one event at a time, so neither side buffers the stream.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from slipstream.protocol.anthropic import (
    FINISH_TO_STOP_REASON,
    STOP_REASON_TO_FINISH,
    usage_to_openai,
)


class AnthropicStreamError(Exception):
    """An `error` event inside an Anthropic stream (e.g. overloaded_error)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class MessagesStreamToChat:
    """Anthropic SSE events → OpenAI chunks. `usage` is final after message_delta."""

    def __init__(self, model: str | None = None, include_usage: bool = False) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # content block index → tool_calls index

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }

    def openai_usage(self) -> dict[str, Any]:
        return usage_to_openai(self.usage)

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks (possibly none) for one Anthropic event."""
        kind = data.get("type", event)
        if kind == "message_start":
            message = data.get("message") or {}
            self.model = self.model or message.get("model")
            if message.get("id"):
                self.id = f"chatcmpl-{message['id']}"
            self.usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self._tool_index)
                self._tool_index[data.get("index", 0)] = index
                call = {
                    "index": index,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self._tool_index.get(data.get("index", 0), 0)
                call = {"index": index, "function": {"arguments": delta.get("partial_json", "")}}
                return [self._chunk({"tool_calls": [call]})]
            return []  # thinking / signature deltas have no OpenAI chat equivalent
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                return [self._chunk({}, STOP_REASON_TO_FINISH.get(reason, "stop"))]
            return []
        if kind == "message_stop":
            if not self.include_usage:
                return []
            chunk = self._chunk({})
            chunk["choices"] = []
            chunk["usage"] = self.openai_usage()
            return [chunk]
        if kind == "error":
            error = data.get("error") or {}
            raise AnthropicStreamError(error.get("type", "api_error"), error.get("message", ""))
        return []  # ping, content_block_stop, unknown future events


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: `event: <name>` then its JSON `data:` line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class ChatStreamToMessages:
    """OpenAI chunks → Anthropic SSE events, for the `/v1/messages` front door."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.id = f"msg_{uuid.uuid4().hex}"
        self._started = False
        self._block: int | None = None  # index of the open content block
        self._block_kind: str | None = None
        self._next_block = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool_call index → block index
        self._stop_reason: str | None = None
        self._usage: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0}
        self._stopped = False

    def _start(self) -> list[tuple[str, dict[str, Any]]]:
        self._started = True
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": dict(self._usage),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[tuple[str, dict[str, Any]]]:
        if self._block is None:
            return []
        index, self._block, self._block_kind = self._block, None, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._close_block()
        self._block, self._block_kind = self._next_block, kind
        self._next_block += 1
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        return [*events, ("content_block_start", start)]

    def feed(self, chunk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The Anthropic (event, data) pairs for one OpenAI chunk."""
        events = [] if self._started else self._start()
        if chunk.get("usage"):
            usage = chunk["usage"]
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            self._usage = {
                "input_tokens": max(0, int(usage.get("prompt_tokens") or 0) - cached),
                "output_tokens": int(usage.get("completion_tokens") or 0),
                "cache_read_input_tokens": cached,
            }
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self._block_kind != "text":
                    events += self._open_block("text", {"type": "text", "text": ""})
                text_delta = {"type": "text_delta", "text": delta["content"]}
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": self._block, "delta": text_delta},
                    )
                )
            for call in delta.get("tool_calls") or []:
                events += self._tool_delta(call)
            if choice.get("finish_reason"):
                self._stop_reason = FINISH_TO_STOP_REASON.get(choice["finish_reason"], "end_turn")
        return events

    def _tool_delta(self, call: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        if index not in self._tool_blocks:
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name"),
                "input": {},
            }
            events += self._open_block("tool_use", block)
            self._tool_blocks[index] = self._block or 0
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            data = {
                "type": "content_block_delta",
                "index": self._tool_blocks[index],
                "delta": delta,
            }
            events.append(("content_block_delta", data))
        return events

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        """Closing events once the OpenAI stream ended ([DONE])."""
        if self._stopped:
            return []
        self._stopped = True
        events = [] if self._started else self._start()
        events += self._close_block()
        delta = {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}
        usage = {"output_tokens": self._usage["output_tokens"], **self._usage}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def error_event(error_type: str, message: str) -> bytes:
    """The `error` event that ends an Anthropic stream after a mid-stream failure."""
    return encode_event(
        "error", {"type": "error", "error": {"type": error_type, "message": message}}
    )
