"""What `serve` builds behind its front doors: the default config, the engine decision and the
provider factory (no engine process needed)."""

from __future__ import annotations

from typing import Any

import pytest

from slipstream.config.loader import parse_config
from slipstream.config.schema import DeploymentConfig
from slipstream.providers.local import LocalEngineProvider
from slipstream.providers.openai_compat import OpenAICompatProvider
from slipstream.server.gateway_setup import default_config, local_model, provider_factory


def config(*deployments: dict[str, Any]) -> Any:
    return parse_config({"models": [{"name": "m", "deployments": list(deployments)}]})


def test_default_config_is_one_model_served_by_the_engine() -> None:
    (model,) = default_config("my-model").models
    (deployment,) = model.deployments
    assert model.name == "my-model" and deployment.provider == "local"
    assert deployment.model == "my-model" and model.retries.max == 0
    assert local_model(default_config("my-model")) == "my-model"


def test_the_engine_is_needed_only_for_local_deployments() -> None:
    remote = {"provider": "openai", "model": "x", "api_base": "http://127.0.0.1:1/v1"}
    assert local_model(config(remote)) is None
    assert local_model(config(remote, {"provider": "local", "model": "smol"})) == "smol"
    with pytest.raises(ValueError, match="one model per process"):
        local_model(
            config({"provider": "local", "model": "a"}, {"provider": "local", "model": "b"})
        )


def test_factory_builds_local_and_remote_and_refuses_what_it_cannot_serve() -> None:
    engine = object()  # stands in for a started AsyncEngineClient
    build = provider_factory(engine, 8, frozenset({"smol"}))  # type: ignore[arg-type]
    local = build(DeploymentConfig(provider="local", model="smol"))
    assert isinstance(local, LocalEngineProvider) and local.max_queue == 8
    remote = DeploymentConfig(provider="openai", model="x", api_base="http://127.0.0.1:1/v1")
    assert isinstance(build(remote), OpenAICompatProvider)
    with pytest.raises(ValueError, match="engine serves"):
        build(DeploymentConfig(provider="local", model="other"))
    with pytest.raises(ValueError, match="no engine is running"):
        provider_factory(None, 8)(DeploymentConfig(provider="local", model="smol"))
