"""Azure OpenAI: the OpenAI wire format behind deployment URLs and an `api-key` header.

`{api_base}/openai/deployments/{deployment}/chat/completions?api-version=...`; the deployment,
not the body's `model`, picks the model, so the body passes through as for any
OpenAI-compatible upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from slipstream.providers.base import Endpoint, Timeouts
from slipstream.providers.http_transport import UpstreamHTTP
from slipstream.providers.openai_compat import OpenAICompatProvider
from slipstream.providers.upstream_errors import Redactor

DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIProvider(OpenAICompatProvider):
    """One Azure OpenAI deployment. `deployment` defaults to the request's upstream model name."""

    name = "azure"

    def __init__(
        self,
        *,
        api_base: str,
        api_key: str | None = None,
        deployment: str | None = None,
        api_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        stream_usage: bool = True,
        secrets: Iterable[str] = (),
        http: UpstreamHTTP | None = None,
    ) -> None:
        self.deployment = deployment
        self.api_version = api_version or DEFAULT_API_VERSION
        super().__init__(
            api_base=api_base,
            api_key=api_key,
            headers=headers,
            timeouts=timeouts,
            stream_usage=stream_usage,
            http=http or UpstreamHTTP(self.name, Redactor.of([api_key, *secrets])),
        )

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"api-key": api_key} if api_key else {}

    def url(self, endpoint: Endpoint, body: Mapping[str, Any]) -> str:
        deployment = quote(self.deployment or str(body.get("model", "")), safe="")
        return (
            f"{self.api_base}/openai/deployments/{deployment}/{endpoint.value}"
            f"?api-version={self.api_version}"
        )
