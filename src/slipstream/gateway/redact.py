"""Last line of defence: scrub every configured credential from text that leaves the gateway.

Adapters promise error messages without credentials; an upstream that echoes the key back in
its error body would still break that promise, so final errors, error chunks and log lines
pass through here.
"""

from __future__ import annotations

from collections.abc import Iterable

from slipstream.config.secrets import MASK, Secret

MIN_SECRET_LEN = 4  # shorter "secrets" would mask ordinary words


class Redactor:
    def __init__(self, secrets: Iterable[Secret]) -> None:
        values = {s.reveal() for s in secrets}
        self._values = sorted(
            (v for v in values if len(v) >= MIN_SECRET_LEN), key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for v in self._values:
            if v in text:
                text = text.replace(v, MASK)
        return text
