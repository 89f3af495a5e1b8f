"""slipstream.yaml: the issue's example loads; bad configs fail naming the field; secrets stay hidden."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from slipstream.config import ConfigError, Secret, load_config, parse_config

CANARY = "sk-canary-5f1e2d3c4b"

ISSUE_EXAMPLE = """
models:
  - name: chat
    deployments:
      - provider: openai          # OpenAI-compatible upstream
        model: upstream-model-name
        api_base: http://127.0.0.1:9001/v1
        api_key: env:UPSTREAM_KEY
      - provider: local           # the embedded engine
        model: smollm2-135m
    fallbacks: [chat-large]
  - name: chat-large
    deployments:
      - provider: local
        model: smollm2-135m
master_key: env:UPSTREAM_KEY
database_url: sqlite:///slipstream.db
redis_url: redis://127.0.0.1:6379/0
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "slipstream.yaml"
    p.write_text(text)
    return p


def problems_of(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_issue_example_loads_with_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", CANARY)
    cfg = load_config(write(tmp_path, ISSUE_EXAMPLE))
    chat = cfg.model("chat")
    assert chat is not None and chat.fallbacks == ("chat-large",)
    openai, local = chat.deployments
    assert openai.api_key is not None and openai.api_key.reveal() == CANARY
    assert openai.api_key.source == "env:UPSTREAM_KEY"
    assert (openai.name, local.name) == ("openai/upstream-model-name", "local/smollm2-135m")
    assert chat.routing.strategy == "weighted" and openai.timeouts.first_token == 60.0
    assert local.api_key is None


def test_secrets_never_print_or_serialise(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", CANARY)
    cfg = load_config(write(tmp_path, ISSUE_EXAMPLE))
    for text in (
        str(cfg),
        repr(cfg),
        cfg.model_dump_json(),
        json.dumps(cfg.model_dump(mode="json")),
    ):
        assert CANARY not in text
    key = cfg.models[0].deployments[0].api_key
    assert str(key) == "***" and f"{key}" == "***" and "***" in repr(key)


def test_file_secret_and_literal_warning(tmp_path, caplog):
    secret_file = tmp_path / "key.txt"
    secret_file.write_text(CANARY + "\n")
    with caplog.at_level(logging.WARNING, logger="slipstream.config"):
        cfg = parse_config(
            {
                "models": [
                    {
                        "name": "m",
                        "deployments": [
                            {"provider": "openai", "model": "a", "api_base": "http://h/v1",
                             "api_key": f"file:{secret_file}"},
                            {"provider": "openai", "model": "b", "api_base": "http://h/v1",
                             "api_key": CANARY},
                        ],
                    }
                ]
            }
        )  # fmt: skip
    a, b = cfg.models[0].deployments
    assert a.api_key == Secret(CANARY) and b.api_key == Secret(CANARY)
    assert any("literally" in r.getMessage() for r in caplog.records)
    assert CANARY not in caplog.text


def test_missing_env_var_names_the_field(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    msg = problems_of(
        {"models": [{"name": "m", "deployments": [
            {"provider": "openai", "model": "a", "api_base": "http://h/v1", "api_key": "env:NOPE_KEY"}
        ]}]}
    )  # fmt: skip
    assert "models[0].deployments[0].api_key: environment variable 'NOPE_KEY' is not set" in msg


def test_bad_fields_are_named_with_their_path():
    msg = problems_of(
        {
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        {"provider": "local", "model": "a"},
                        {"provider": "openai", "model": "b", "api_base": "ftp://h", "wieght": 2},
                        {"provider": "nosuch", "model": "c"},
                    ],
                    "routing": {"strategy": "fastest"},
                    "retries": {"max": -1},
                }
            ],
            "master_kee": "x",
        }
    )
    assert "models[0].deployments[1].api_base: must be an http:// or https:// URL" in msg
    assert "models[0].deployments[1].wieght: unknown key" in msg
    assert "models[0].deployments[2].provider:" in msg
    assert "models[0].routing.strategy:" in msg
    assert "models[0].retries.max:" in msg
    assert "master_kee: unknown key" in msg


def test_cross_references_and_provider_requirements():
    msg = problems_of(
        {"models": [{"name": "m", "deployments": [{"provider": "local", "model": "a"}],
                     "fallbacks": ["ghost"]}]}
    )  # fmt: skip
    assert "models[0].fallbacks: unknown model(s) ['ghost']" in msg
    msg = problems_of(
        {"models": [{"name": "m", "deployments": [{"provider": "azure", "model": "a"}]}]}
    )
    assert "models[0].deployments[0]:" in msg and "api_base" in msg
    msg = problems_of(
        {"models": [{"name": "m", "deployments": [{"provider": "local", "model": "a"},
                                                  {"provider": "local", "model": "a", "name": "local/a"}]}]}
    )  # fmt: skip
    assert "unique" in msg
    msg = problems_of({"models": [{"name": "m", "deployments": []}]})
    assert "models[0].deployments:" in msg


def test_errors_never_echo_input_values():
    msg = problems_of(
        {"models": [{"name": "m", "deployments": [
            {"provider": "local", "model": "a", "weight": CANARY, "api_base": CANARY}
        ]}]}
    )  # fmt: skip
    assert "models[0].deployments[0].weight" in msg and CANARY not in msg


def test_yaml_syntax_error_has_a_line_number(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "models:\n  - name: [unclosed\n"))
    assert "line" in str(info.value)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_each_load_is_a_new_immutable_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", CANARY)
    path = write(tmp_path, ISSUE_EXAMPLE)
    first, second = load_config(path), load_config(path)
    assert first is not second and first == second
    with pytest.raises(ValidationError):
        first.models[0].name = "other"  # type: ignore[misc]
    assert isinstance(first.models, tuple)
