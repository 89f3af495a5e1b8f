"""Render a model's Jinja chat template the way transformers' `apply_chat_template` does.

Templates come from untrusted model files, so they run in jinja2's immutable sandbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Used when a model ships no template: plain ChatML.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """The template failed to render the given messages (e.g. it raised on an invalid role)."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **_: Any) -> str:
    # transformers' tojson keeps non-ASCII as-is and does not HTML-escape (unlike jinja's default).
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _flatten_content(content: Any) -> Any:
    """OpenAI-style content parts → one string; strings and None pass through unchanged."""
    if not isinstance(content, list):
        return content
    return "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in content
    )


def _normalize_message(message: dict[str, Any]) -> dict[str, Any]:
    if "content" not in message:
        return message
    return {**message, "content": _flatten_content(message["content"])}


@dataclass(frozen=True)
class ChatTemplate:
    """A compiled chat template plus the special-token strings it may refer to."""

    source: str = CHATML_TEMPLATE
    bos_token: str = ""
    eos_token: str = ""
    extra_context: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            compiled = env.from_string(self.source)
        except TemplateError as exc:
            raise ChatTemplateError(f"Invalid chat template: {exc}") from exc
        object.__setattr__(self, "_compiled", compiled)

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt text for `messages` (content parts are flattened to text first)."""
        context = {
            **self.extra_context,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **kwargs,
            "messages": [_normalize_message(m) for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "tools": tools,
        }
        try:
            return self._compiled.render(**context)  # type: ignore[attr-defined]
        except ChatTemplateError:
            raise
        except TemplateError as exc:
            raise ChatTemplateError(f"Chat template failed to render: {exc}") from exc
