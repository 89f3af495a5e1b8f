"""OpenAI chat ⇄ Gemini `generateContent`: contents/parts, systemInstruction,
functionDeclarations/functionCall/functionResponse, finishReason and usageMetadata.

Gemini names a tool result by function name, not by call id, so tool messages are matched to
the assistant tool call that produced them. Gemini sends each function call whole, so a stream
needs no argument buffering.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image["url"] if isinstance(image, dict) else str(image)
            if url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                parts.append({"fileData": {"mimeType": "image/*", "fileUri": url}})
        else:
            raise ValueError(f"content part type {kind!r} cannot be sent to Gemini")
    return parts


def _tool_response(content: Any) -> dict[str, Any]:
    text = (
        content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
    )
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    return value if isinstance(value, dict) else {"content": value}


def chat_to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completions body as a Gemini generateContent body."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}

    def append(role: str, parts: list[dict[str, Any]]) -> None:
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content")))
        elif role == "user":
            append("user", _parts(message.get("content")))
        elif role == "assistant":
            parts = _parts(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                call_names[call.get("id", "")] = function.get("name", "")
                args = function.get("arguments") or "{}"
                parts.append(
                    {
                        "functionCall": {
                            "name": function.get("name", ""),
                            "args": orjson.loads(args) if isinstance(args, str) else args,
                        }
                    }
                )
            append("model", parts)
        elif role == "tool":
            name = call_names.get(message.get("tool_call_id", ""), message.get("name") or "")
            response = {"name": name, "response": _tool_response(message.get("content"))}
            append("user", [{"functionResponse": response}])
        else:
            raise ValueError(f"message role {role!r} cannot be sent to Gemini")

    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    if body.get("tools"):
        declarations = []
        for tool in body["tools"]:
            function = tool.get("function") or {}
            declaration = {"name": function.get("name", "")}
            if function.get("description"):
                declaration["description"] = function["description"]
            if function.get("parameters"):
                declaration["parameters"] = function["parameters"]
            declarations.append(declaration)
        out["tools"] = [{"functionDeclarations": declarations}]
        choice = body.get("tool_choice")
        if choice is not None:
            out["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
    return out


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": {"required": "ANY", "none": "NONE"}.get(choice, "AUTO")}


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    names = {
        "temperature": "temperature",
        "top_p": "topP",
        "top_k": "topK",
        "n": "candidateCount",
        "seed": "seed",
        "presence_penalty": "presencePenalty",
        "frequency_penalty": "frequencyPenalty",
    }
    for ours, theirs in names.items():
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    return config


def usage_from_gemini(metadata: dict[str, Any] | None) -> dict[str, Any]:
    metadata = metadata or {}
    prompt = int(metadata.get("promptTokenCount") or 0)
    completion = int(metadata.get("candidatesTokenCount") or 0) + int(
        metadata.get("thoughtsTokenCount") or 0
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": int(metadata.get("cachedContentTokenCount") or 0)
        },
    }


def _candidate_delta(candidate: dict[str, Any], first_call_index: int) -> tuple[str, list[dict]]:
    texts, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        elif "functionCall" in part:
            call = part["functionCall"]
            calls.append(
                {
                    "index": first_call_index + len(calls),
                    "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {
                        "name": call.get("name"),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
    return "".join(texts), calls


def finish_reason(candidate: dict[str, Any], has_calls: bool) -> str | None:
    reason = candidate.get("finishReason")
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    if has_calls and reason == "STOP":
        return "tool_calls"
    return FINISH_REASONS.get(reason, "stop")


def gemini_to_chat(resp: dict[str, Any], model: str | None) -> dict[str, Any]:
    """A Gemini generateContent answer as an OpenAI chat.completion."""
    choices = []
    for position, candidate in enumerate(resp.get("candidates") or []):
        text, calls = _candidate_delta(candidate, 0)
        for call in calls:
            call.pop("index")
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": candidate.get("index", position),
                "message": message,
                "finish_reason": finish_reason(candidate, bool(calls)) or "stop",
                "logprobs": None,
            }
        )
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        message = {"role": "assistant", "content": ""}
        choices = [
            {"index": 0, "message": message, "finish_reason": "content_filter", "logprobs": None}
        ]
    return {
        "id": f"chatcmpl-{resp.get('responseId') or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or resp.get("modelVersion"),
        "choices": choices,
        "usage": usage_from_gemini(resp.get("usageMetadata")),
    }


class GeminiStreamToChat:
    """Gemini stream events (each a partial GenerateContentResponse) → OpenAI chunks."""

    def __init__(self, model: str | None) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.usage: dict[str, Any] = usage_from_gemini(None)
        self._calls = 0
        self._started = False

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("usageMetadata"):
            self.usage = usage_from_gemini(event["usageMetadata"])
        chunks = []
        for candidate in event.get("candidates") or []:
            text, calls = _candidate_delta(candidate, self._calls)
            self._calls += len(calls)
            delta: dict[str, Any] = {}
            if not self._started:
                delta["role"] = "assistant"
                self._started = True
            if text:
                delta["content"] = text
            if calls:
                delta["tool_calls"] = calls
            reason = finish_reason(candidate, self._calls > 0)
            if delta or reason:
                chunks.append(self._chunk(delta, reason, candidate.get("index", 0)))
        return chunks

    def _chunk(self, delta: dict[str, Any], reason: str | None, index: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
            ],
        }

    def usage_chunk(self) -> dict[str, Any]:
        chunk = self._chunk({}, None, 0)
        chunk["choices"] = []
        chunk["usage"] = self.usage
        return chunk
