"""OpenAI chat ⇄ AWS Bedrock Converse / ConverseStream bodies and events.

Converse content is a list of typed blocks (`text`, `image`, `toolUse`, `toolResult`);
tool results travel in a user message; the stream is a sequence of named events
(messageStart, contentBlockStart/Delta/Stop, messageStop, metadata) whose payloads this
module translates into OpenAI chunks.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image["url"] if isinstance(image, dict) else str(image)
            if not (url.startswith("data:image/") and ";base64," in url):
                raise ValueError("Bedrock takes images only as base64 data: URLs")
            mime, data = url[5:].split(";base64,", 1)
            blocks.append({"image": {"format": mime.split("/", 1)[1], "source": {"bytes": data}}})
        else:
            raise ValueError(f"content part type {kind!r} cannot be sent to Bedrock")
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    text = (
        content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
    )
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    block = {"json": value} if isinstance(value, dict) else {"text": text}
    return {"toolResult": {"toolUseId": message.get("tool_call_id", ""), "content": [block]}}


def chat_to_converse(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completions body as a Bedrock Converse body."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content")))
        elif role == "user":
            append("user", _blocks(message.get("content")))
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                args = function.get("arguments") or "{}"
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": call.get("id", ""),
                            "name": function.get("name", ""),
                            "input": orjson.loads(args) if isinstance(args, str) else args,
                        }
                    }
                )
            append("assistant", blocks)
        elif role == "tool":
            append("user", [_tool_result(message)])
        else:
            raise ValueError(f"message role {role!r} cannot be sent to Bedrock")

    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    if body.get("tools") and body.get("tool_choice") != "none":
        tools = []
        for tool in body["tools"]:
            function = tool.get("function") or {}
            spec = {
                "name": function.get("name", ""),
                "inputSchema": {"json": function.get("parameters") or {"type": "object"}},
            }
            if function.get("description"):
                spec["description"] = function["description"]
            tools.append({"toolSpec": spec})
        out["toolConfig"] = {"tools": tools}
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            out["toolConfig"]["toolChoice"] = {"tool": {"name": name}}
        elif choice == "required":
            out["toolConfig"]["toolChoice"] = {"any": {}}
        elif choice == "auto":
            out["toolConfig"]["toolChoice"] = {"auto": {}}
    return out


def usage_from_converse(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Converse counts cache reads/writes apart from inputTokens; OpenAI counts them inside."""
    usage = usage or {}
    cache_read = int(usage.get("cacheReadInputTokens") or 0)
    prompt = (
        int(usage.get("inputTokens") or 0)
        + cache_read
        + int(usage.get("cacheWriteInputTokens") or 0)
    )
    completion = int(usage.get("outputTokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def converse_to_chat(resp: dict[str, Any], model: str | None) -> dict[str, Any]:
    """A Converse answer as an OpenAI chat.completion."""
    texts, calls = [], []
    for block in ((resp.get("output") or {}).get("message") or {}).get("content") or []:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(
                {
                    "id": use.get("toolUseId"),
                    "type": "function",
                    "function": {
                        "name": use.get("name"),
                        "arguments": orjson.dumps(use.get("input") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    reason = STOP_REASONS.get(resp.get("stopReason") or "", "stop")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
        "usage": usage_from_converse(resp.get("usage")),
    }


class ConverseStreamToChat:
    """ConverseStream events → OpenAI chunks; `usage` is set by the final metadata event."""

    def __init__(self, model: str | None) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.usage: dict[str, Any] = usage_from_converse(None)
        self._tool_index: dict[int, int] = {}

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}],
        }

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        if event == "messageStart":
            return [self._chunk({"role": data.get("role", "assistant"), "content": ""})]
        if event == "contentBlockStart":
            use = (data.get("start") or {}).get("toolUse")
            if not use:
                return []
            index = self._tool_index.setdefault(
                data.get("contentBlockIndex", 0), len(self._tool_index)
            )
            call = {
                "index": index,
                "id": use.get("toolUseId"),
                "type": "function",
                "function": {"name": use.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if event == "contentBlockDelta":
            delta = data.get("delta") or {}
            if "text" in delta:
                return [self._chunk({"content": delta["text"]})]
            if "toolUse" in delta:
                index = self._tool_index.get(data.get("contentBlockIndex", 0), 0)
                arguments = delta["toolUse"].get("input", "")
                return [
                    self._chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}
                    )
                ]
            return []
        if event == "messageStop":
            return [self._chunk({}, STOP_REASONS.get(data.get("stopReason") or "", "stop"))]
        if event == "metadata":
            self.usage = usage_from_converse(data.get("usage"))
        return []

    def usage_chunk(self) -> dict[str, Any]:
        chunk = self._chunk({})
        chunk["choices"] = []
        chunk["usage"] = self.usage
        return chunk
