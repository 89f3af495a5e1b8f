"""`build_provider`: each provider family from a validated deployment config."""

from __future__ import annotations

import logging

import pytest
from tests.providers.fake_openai import make_app
from tests.providers.upstream_server import CANARY, assert_no_canary, run

from slipstream.config.schema import DeploymentConfig
from slipstream.providers.anthropic import AnthropicProvider
from slipstream.providers.azure_openai import AzureOpenAIProvider
from slipstream.providers.base import Endpoint, ErrorKind, ProviderError, ProviderRequest
from slipstream.providers.bedrock import BedrockProvider
from slipstream.providers.gemini import GeminiProvider
from slipstream.providers.local import LocalEngineProvider
from slipstream.providers.openai_compat import OpenAICompatProvider
from slipstream.providers.registry import build_provider


def deployment(**fields) -> DeploymentConfig:
    return DeploymentConfig.model_validate(fields)


def test_each_family_builds_its_adapter(monkeypatch):
    monkeypatch.setenv("TEST_KEY", "k-123456")
    cases = [
        (
            {
                "provider": "openai",
                "model": "m",
                "api_base": "http://h/v1",
                "api_key": "env:TEST_KEY",
            },
            OpenAICompatProvider,
        ),
        (
            {
                "provider": "azure",
                "model": "dep",
                "api_base": "https://a.openai.azure.com",
                "api_key": "env:TEST_KEY",
                "api_version": "2024-10-21",
            },
            AzureOpenAIProvider,
        ),
        (
            {"provider": "anthropic", "model": "claude", "api_key": "env:TEST_KEY"},
            AnthropicProvider,
        ),
        (
            {
                "provider": "bedrock",
                "model": "amazon.nova-lite-v1:0",
                "region": "us-west-2",
                "aws_access_key_id": "env:TEST_KEY",
                "aws_secret_access_key": "env:TEST_KEY",
            },
            BedrockProvider,
        ),
        (
            {"provider": "gemini", "model": "gemini-2.0-flash", "api_key": "env:TEST_KEY"},
            GeminiProvider,
        ),
        (
            {
                "provider": "vertex",
                "model": "gemini-2.0-flash",
                "api_key": "env:TEST_KEY",
                "api_base": "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1",
            },
            GeminiProvider,
        ),
    ]
    for fields, cls in cases:
        provider = build_provider(deployment(**fields))
        assert isinstance(provider, cls), fields["provider"]
        run(provider.aclose())
    azure = build_provider(deployment(**cases[1][0]))
    assert "/openai/deployments/dep/chat/completions?api-version=2024-10-21" in azure.url(
        Endpoint.CHAT, {}
    )
    assert build_provider(deployment(**cases[5][0])).name == "vertex"
    local = build_provider(
        deployment(provider="local", model="smollm2-135m"), engine_client=object()
    )
    assert isinstance(local, LocalEngineProvider)


def test_unservable_deployments_say_why():
    with pytest.raises(ValueError, match="engine"):
        build_provider(deployment(provider="local", model="smollm2-135m"))
    with pytest.raises(ValueError, match="api_base"):
        build_provider(deployment(provider="vertex", model="g"))


def test_secret_from_config_reaches_upstream_but_not_errors(upstream_factory, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    url = upstream_factory(make_app("the-right-key")).url + "/v1"
    monkeypatch.setenv("CANARY_KEY", CANARY)
    provider = build_provider(
        deployment(
            provider="openai",
            model="m",
            api_base=url,
            api_key="env:CANARY_KEY",
            headers={"x-extra": "env:CANARY_KEY"},
        )
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    async def go():
        try:
            return await provider.complete(ProviderRequest(Endpoint.CHAT, body, False, "r"))
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        run(go())
    assert info.value.kind is ErrorKind.AUTH
    assert_no_canary(info.value, caplog)
