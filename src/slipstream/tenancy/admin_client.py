"""A small HTTP client of the tenancy admin API, used by `slipstream keys|teams|spend`."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "SLIPSTREAM_URL"
KEY_ENV = "SLIPSTREAM_MASTER_KEY"


class AdminError(Exception):
    """The server refused (message from its OpenAI-shaped error body) or was unreachable."""


class AdminClient:
    def __init__(self, url: str | None = None, master_key: str | None = None) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = master_key or os.environ.get(KEY_ENV)
        if not key:
            raise AdminError(f"no master key: pass --master-key or set {KEY_ENV}")
        self._headers = {"Authorization": f"Bearer {key}"}

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            r = httpx.request(
                method, self.url + path, json=body, params=query, headers=self._headers, timeout=30
            )
        except httpx.HTTPError as e:
            raise AdminError(f"cannot reach {self.url}: {type(e).__name__}") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except Exception:
                message = r.text[:200]
            raise AdminError(f"{r.status_code}: {message}")
        return r.json()
