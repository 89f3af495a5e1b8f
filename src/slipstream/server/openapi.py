"""The OpenAPI 3.1 document, generated from the protocol's pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from slipstream.protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelList,
)

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "OpenAI-shaped error", "content": _json(ErrorResponse)}
        for s in statuses
    }


def _generation_op(
    summary: str, request: type[BaseModel], response: type[BaseModel], chunk: type[BaseModel]
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": _json(request)},
            "responses": {
                "200": {
                    "description": "The completion, or (with stream=true) server-sent events "
                    f"each carrying a {chunk.__name__} and ending with `data: [DONE]`.",
                    "content": {**_json(response), "text/event-stream": {"schema": _ref(chunk)}},
                },
                **_errors(400, 404, 503),
            },
        }
    }


def _passthrough_op(summary: str) -> dict[str, Any]:
    """An operation whose JSON bodies are the upstream's own (no schema of ours)."""
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {}}},
            "responses": {"200": {"description": "The answer"}, **_errors(400, 401, 404, 503)},
        }
    }


@cache
def openapi_document() -> dict[str, Any]:
    models = [
        ChatCompletionRequest,
        ChatCompletionResponse,
        ChatCompletionChunk,
        CompletionRequest,
        CompletionResponse,
        ModelList,
        ErrorResponse,
    ]
    _, schema = models_json_schema(
        [(m, "validation" if m.__name__.endswith("Request") else "serialization") for m in models],
        ref_template=_REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Slipstream OpenAI-compatible API", "version": "1"},
        "paths": {
            "/v1/chat/completions": _generation_op(
                "Create a chat completion",
                ChatCompletionRequest,
                ChatCompletionResponse,
                ChatCompletionChunk,
            ),
            "/v1/completions": _generation_op(
                "Create a text completion",
                CompletionRequest,
                CompletionResponse,
                CompletionResponse,
            ),
            "/v1/embeddings": _passthrough_op(
                "Create embeddings (routed to a deployment that serves them; the local "
                "engine answers 400)"
            ),
            "/v1/messages": _passthrough_op(
                "Create an Anthropic Messages answer, or (with stream=true) Anthropic SSE events"
            ),
            "/admin/reload": _passthrough_op(
                "Reload the config file (Authorization: Bearer <master_key>; 404 without one)"
            ),
            "/v1/models": {
                "get": {
                    "summary": "List the public model names",
                    "responses": {"200": {"description": "Models", "content": _json(ModelList)}},
                }
            },
            "/health": {
                "get": {
                    "summary": "Engine liveness",
                    "responses": {
                        "200": {"description": "The engine is alive"},
                        **_errors(503),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Prometheus text format"}},
                }
            },
        },
        "components": {"schemas": schema.get("$defs", {})},
    }
