"""The Anthropic Messages front door's translations: an Anthropic request → an OpenAI chat
request (sent through the gateway), and the OpenAI answer → an Anthropic response. The other
direction (calling an Anthropic upstream) is in anthropic.py; stream events in
anthropic_stream.py."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from slipstream.protocol.anthropic import (
    FINISH_TO_STOP_REASON,
    parse_arguments,
    usage_to_anthropic,
)

# --- Anthropic request → OpenAI chat request (the /v1/messages front door) -----------------


def _content_to_openai(content: Any) -> Any:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif block.get("type") == "image":
            source = block.get("source") or {}
            url = (
                f"data:{source.get('media_type')};base64,{source.get('data')}"
                if source.get("type") == "base64"
                else source.get("url", "")
            )
            parts.append({"type": "image_url", "image_url": {"url": url}})
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if b.get("type") == "text")


def messages_request_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages body as an OpenAI chat completions body."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _content_to_openai(system)})
    for message in body.get("messages") or []:
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        ordinary = [b for b in content or [] if b.get("type") in ("text", "image")]
        if role == "assistant":
            calls = [
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {
                        "name": b.get("name"),
                        "arguments": orjson.dumps(b.get("input") or {}).decode(),
                    },
                }
                for b in content or []
                if b.get("type") == "tool_use"
            ]
            out: dict[str, Any] = {"role": "assistant", "content": _text_of_blocks(ordinary)}
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
            continue
        for block in content or []:
            if block.get("type") == "tool_result":
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id"),
                        "content": _tool_result_text(block.get("content")),
                    }
                )
        if ordinary:
            messages.append({"role": "user", "content": _content_to_openai(ordinary)})

    out = {"model": body.get("model"), "messages": messages, "max_tokens": body.get("max_tokens")}
    for key in ("temperature", "top_p", "top_k", "stream"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        out["stream_options"] = {"include_usage": True}
    if (body.get("metadata") or {}).get("user_id"):
        out["user"] = body["metadata"]["user_id"]
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {"type": "object", "properties": {}},
                },
            }
            for t in body["tools"]
        ]
    choice = body.get("tool_choice")
    if choice:
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        else:
            out["tool_choice"] = {"any": "required", "none": "none"}.get(kind, "auto")
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    return out


def _text_of_blocks(blocks: list[dict[str, Any]]) -> str | None:
    texts = [b.get("text", "") for b in blocks if b.get("type") == "text"]
    return "".join(texts) if texts else None


# --- OpenAI response → Anthropic response -------------------------------------------------


def chat_response_to_messages(resp: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """An OpenAI chat.completion as an Anthropic Messages answer."""
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    return {
        "id": f"msg_{resp.get('id') or uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model or resp.get("model"),
        "content": content,
        "stop_reason": FINISH_TO_STOP_REASON.get(choice.get("finish_reason") or "", "end_turn"),
        "stop_sequence": None,
        "usage": usage_to_anthropic(resp.get("usage")),
    }
