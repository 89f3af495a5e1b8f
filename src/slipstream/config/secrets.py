"""Secret references (`env:VAR`, `file:/path`, or a plain literal) and the `Secret` value type.

A credential is resolved once, at load time, into a `Secret` whose `str`/`repr` and any
serialised form are `'***'`: the only way to see the value is an explicit `reveal()`, so a
config object can be logged, printed in an error or dumped as JSON without leaking a key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

logger = logging.getLogger("slipstream.config")

MASK = "***"


class Secret:
    """A credential that never prints itself."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str = "literal") -> None:
        self._value = value
        self._source = source  # "env:VAR", "file:/path" or "literal": safe to show

    def reveal(self) -> str:
        """The credential itself; call only where it is sent upstream."""
        return self._value

    @property
    def source(self) -> str:
        return self._source

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> Secret:  # immutable: copies may share
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:  # pickling would carry the value somewhere unseen
        raise TypeError("Secret values cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(
            _validate_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _s: MASK),
        )


def resolve_secret(ref: str, *, warn_literal: bool = True) -> Secret:
    """Resolve a reference to a `Secret`. Raises ValueError naming the reference, never a value."""
    if ref.startswith("env:"):
        var = ref[4:]
        if not var:
            raise ValueError("empty environment variable name in 'env:' reference")
        value = os.environ.get(var)
        if value is None:
            raise ValueError(f"environment variable {var!r} is not set")
        return Secret(value, f"env:{var}")
    if ref.startswith("file:"):
        path = Path(ref[5:]).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None
        return Secret(value, f"file:{path}")
    if warn_literal:
        logger.warning(
            "a credential is written literally in the config; use 'env:VAR' or 'file:/path'"
        )
    return Secret(ref, "literal")


def _validate_secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("secret_type", "must be a string secret reference")
    try:
        return resolve_secret(value)
    except ValueError as exc:
        raise PydanticCustomError("secret_ref", str(exc)) from None


def header_value(value: Any) -> Secret:
    """Like a secret, but literal header values are normal (no warning)."""
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("header_type", "header values must be strings")
    if value.startswith(("env:", "file:")):
        try:
            return resolve_secret(value)
        except ValueError as exc:
            raise PydanticCustomError("secret_ref", str(exc)) from None
    return Secret(value, "literal")
