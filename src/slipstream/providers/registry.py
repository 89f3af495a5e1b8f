"""`build_provider`: a validated `DeploymentConfig` → the adapter for its provider family.

This is the only place that reveals credentials: each `Secret` is opened here and handed to
the adapter that sends it, together with the list of values its errors must redact.
"""

from __future__ import annotations

from typing import Any

from slipstream.config.schema import DeploymentConfig
from slipstream.config.secrets import Secret
from slipstream.providers.base import Provider, Timeouts


def _reveal(secret: Secret | None) -> str | None:
    return secret.reveal() if secret is not None else None


def _timeouts(config: DeploymentConfig) -> Timeouts:
    t = config.timeouts
    return Timeouts(connect_s=t.connect, first_token_s=t.first_token, total_s=t.total)


def build_provider(config: DeploymentConfig, *, engine_client: Any = None) -> Provider:
    """The adapter for one deployment. `engine_client` (an `AsyncEngineClient`) serves
    `provider: local`. Raises ValueError for a deployment this build cannot serve."""
    headers = {name: value.reveal() for name, value in config.headers.items()}
    secret_headers = [v.reveal() for v in config.headers.values() if v.source != "literal"]
    common: dict[str, Any] = {
        "headers": headers,
        "timeouts": _timeouts(config),
        "secrets": secret_headers,
    }
    api_key = _reveal(config.api_key)
    provider = config.provider
    if provider == "openai":
        from slipstream.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(api_base=str(config.api_base), api_key=api_key, **common)
    if provider == "azure":
        from slipstream.providers.azure_openai import AzureOpenAIProvider

        return AzureOpenAIProvider(
            api_base=str(config.api_base),
            api_key=api_key,
            deployment=config.model,
            api_version=config.api_version,
            **common,
        )
    if provider == "anthropic":
        from slipstream.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            api_base=config.api_base, api_key=api_key, api_version=config.api_version, **common
        )
    if provider == "bedrock":
        from slipstream.providers.bedrock import BedrockProvider

        return BedrockProvider(
            region=str(config.region),
            model=config.model,
            api_base=config.api_base,
            api_key=api_key,
            aws_access_key_id=_reveal(config.aws_access_key_id),
            aws_secret_access_key=_reveal(config.aws_secret_access_key),
            aws_session_token=_reveal(config.aws_session_token),
            **common,
        )
    if provider in ("gemini", "vertex"):
        from slipstream.providers.gemini import GeminiProvider

        if provider == "vertex" and not config.api_base:
            raise ValueError(
                "provider 'vertex' needs an api_base naming the project and location, e.g. "
                "https://us-central1-aiplatform.googleapis.com/v1/projects/P/locations/us-central1"
            )
        return GeminiProvider(
            api_base=config.api_base,
            api_key=api_key,
            model=config.model,
            vertex=provider == "vertex",
            **common,
        )
    if provider == "local":
        if engine_client is None:
            raise ValueError("provider 'local' needs the embedded engine, which is not running")
        from slipstream.providers.local import LocalEngineProvider

        return LocalEngineProvider(engine_client, model=config.model)
    raise ValueError(f"unknown provider {provider!r}")
