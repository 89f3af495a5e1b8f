"""Chat template rendering: transformers-compatible helpers, sandboxing and the ChatML fallback."""

from __future__ import annotations

import json

import pytest

from slipstream.engine.loader import ChatTemplate, ChatTemplateError

USER = [{"role": "user", "content": "Hi"}]


def test_chatml_fallback_when_model_has_no_template():
    rendered = ChatTemplate().render(
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": [{"type": "text", "text": "Q"}]},
        ]
    )
    assert (
        rendered
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )
    assert not ChatTemplate().render(USER, add_generation_prompt=False).endswith("assistant\n")


def test_raise_exception_becomes_chat_template_error():
    template = ChatTemplate(
        "{% if messages[0]['role'] != 'system' %}{{ raise_exception('need a system turn') }}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="need a system turn"):
        template.render(USER)


def test_tools_tojson_and_special_tokens():
    template = ChatTemplate(
        "{{ bos_token }}{% for t in tools %}{{ t | tojson }}{% endfor %}"
        "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
    )
    tools = [{"type": "function", "function": {"name": "météo", "parameters": {}}}]
    assert (
        template.render(USER, tools=tools) == f"<s>{json.dumps(tools[0], ensure_ascii=False)}Hi</s>"
    )


def test_trim_blocks_and_strftime_now():
    template = ChatTemplate("  {% if true %}\n{{ strftime_now('%Y') | length }}\n  {% endif %}\n")
    assert template.render(USER) == "4\n"


def test_sandbox_blocks_python_internals():
    template = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ChatTemplateError):
        template.render(USER)


def test_syntax_error_is_reported():
    with pytest.raises(ChatTemplateError, match="Invalid chat template"):
        ChatTemplate("{% for m in messages %}")
