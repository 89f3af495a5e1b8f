"""Load `slipstream.yaml` into a frozen `GatewayConfig`, with errors that name the bad field.

Pydantic's own messages echo the offending input, which could be a credential; `ConfigError`
is built from the location and message only, e.g.
`models[0].deployments[1].api_base: must be an http:// or https:// URL`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from slipstream.config.schema import GatewayConfig


class ConfigError(ValueError):
    """The config file is unreadable or invalid; the message lists every problem by field path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config {source}:\n{lines}")


def field_path(loc: tuple[Any, ...]) -> str:
    """('models', 0, 'deployments', 1, 'api_base') → 'models[0].deployments[1].api_base'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-"):  # validator frames are not fields
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        path = field_path(tuple(err.get("loc", ())))
        problems.append(f"{path}: {msg}" if path else msg)
    return problems


def parse_config(data: Any, source: str = "<config>") -> GatewayConfig:
    """Validate an already-parsed mapping."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping (models:, master_key:, ...)"])
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read, parse and validate a config file; every call returns a new immutable snapshot."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(str(p), [f"{where}{problem}"]) from None
    return parse_config(data, str(p))
