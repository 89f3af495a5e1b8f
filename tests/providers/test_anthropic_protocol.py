"""The Anthropic ⇄ OpenAI translation, both directions.

The backward direction (what the gateway's `/v1/messages` front door needs) is checked with
the official `anthropic` SDK: a small Messages endpoint translates each request to OpenAI chat,
sends it through the OpenAI-compatible adapter to a fake upstream, and translates the answer
and the stream back.
"""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.providers.fake_openai import make_app as make_openai_app

from slipstream.protocol.anthropic import (
    chat_request_to_messages,
    error_body,
    messages_response_to_chat,
)
from slipstream.protocol.anthropic_inbound import (
    chat_response_to_messages,
    messages_request_to_chat,
)
from slipstream.protocol.anthropic_stream import (
    ChatStreamToMessages,
    MessagesStreamToChat,
    encode_event,
)
from slipstream.providers.base import Endpoint, ProviderError, ProviderRequest
from slipstream.providers.openai_compat import OpenAICompatProvider

KEY = "sk-upstream-good-key-123"


def front_door(upstream: str) -> Starlette:
    """A minimal `/v1/messages` built from the protocol functions and the OpenAI adapter."""

    async def messages(request: Request) -> Response:
        body = await request.json()
        chat = messages_request_to_chat(body)
        provider = OpenAICompatProvider(api_base=upstream, api_key=KEY)
        req = ProviderRequest(Endpoint.CHAT, chat, bool(chat.get("stream")), "r1")
        if not chat.get("stream"):
            try:
                answer = await provider.complete(req)
            except ProviderError as exc:
                return JSONResponse(error_body(exc.status, exc.message), status_code=exc.status)
            finally:
                await provider.aclose()
            return JSONResponse(chat_response_to_messages(answer.body, body["model"]))

        async def events():
            translator = ChatStreamToMessages(body["model"])
            try:
                async for chunk in provider.stream(req):
                    data = chunk.data if chunk.data is not None else orjson.loads(chunk.raw)
                    for name, event in translator.feed(data):
                        yield encode_event(name, event)
                for name, event in translator.finish():
                    yield encode_event(name, event)
            finally:
                await provider.aclose()

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


@pytest.fixture(scope="module")
def sdk(upstream_factory) -> anthropic.Anthropic:
    upstream = upstream_factory(make_openai_app(KEY)).url + "/v1"
    door = upstream_factory(front_door(upstream))
    return anthropic.Anthropic(base_url=door.url, api_key="unused", max_retries=0)


def test_anthropic_sdk_non_stream(sdk):
    message = sdk.messages.create(
        model="m1", max_tokens=20, system="Be brief.", messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].text == "Hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 2 and message.usage.cache_read_input_tokens == 4
    assert message.usage.input_tokens == 7  # 11 prompt tokens, 4 of them cached


def test_anthropic_sdk_tool_use(sdk):
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    message = sdk.messages.create(
        model="tools",
        max_tokens=20,
        tools=tools,
        messages=[{"role": "user", "content": "Weather?"}],
    )
    assert message.stop_reason == "tool_use"
    use = message.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}


def test_anthropic_sdk_stream_text_and_tools(sdk):
    with sdk.messages.stream(
        model="m1", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 2
    with sdk.messages.stream(
        model="tools",
        max_tokens=20,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "Hi"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Paris"}


def test_sdk_sees_upstream_errors_with_their_status(sdk):
    with pytest.raises(anthropic.RateLimitError):
        sdk.messages.create(
            model="fail-429", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(
            model="fail-400-ctx", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


# --- pure functions --------------------------------------------------------------------


def test_request_round_trip_keeps_the_conversation():
    anthropic_body: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 64,
        "system": "sys",
        "temperature": 0.3,
        "stop_sequences": ["X"],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
            },
        ],
    }
    chat = messages_request_to_chat(anthropic_body)
    assert chat["messages"][0] == {"role": "system", "content": "sys"}
    assert chat["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "ok"}
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["parallel_tool_calls"] is False
    back = chat_request_to_messages(chat)
    for key in ("model", "max_tokens", "system", "temperature", "stop_sequences", "tools"):
        assert back[key] == anthropic_body[key], key
    assert back["tool_choice"] == anthropic_body["tool_choice"]
    assert back["messages"] == anthropic_body["messages"]


def test_stop_reasons_and_cache_usage():
    for stop, finish in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
    ]:
        resp = {
            "id": "m",
            "content": [{"type": "text", "text": "x"}],
            "stop_reason": stop,
            "usage": {"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": 5},
        }
        out = messages_response_to_chat(resp, "m")
        assert out["choices"][0]["finish_reason"] == finish
        assert out["usage"]["prompt_tokens"] == 8
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 5
        assert chat_response_to_messages(out)["usage"]["input_tokens"] == 3


def test_stream_translators_are_inverse_on_text_and_tools():
    openai_chunks = [
        {
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ]
        },
        {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ]
                    },
                    "finish_reason": None,
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
    ]
    forward = ChatStreamToMessages("m")
    events = [e for c in openai_chunks for e in forward.feed(c)] + forward.finish()
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == 2 == names.count("content_block_stop")
    back = MessagesStreamToChat("m", include_usage=True)
    chunks = [c for n, e in events for c in back.feed(n, e)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    args = "".join(
        tc["function"]["arguments"]
        for c in chunks
        if c["choices"]
        for tc in c["choices"][0]["delta"].get("tool_calls") or []
    )
    assert text == "Hi" and orjson.loads(args) == {"a": 1}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert (
        chunks[-1]["usage"]["completion_tokens"] == 4 and chunks[-1]["usage"]["prompt_tokens"] == 9
    )
