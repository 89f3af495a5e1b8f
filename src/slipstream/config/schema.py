"""The schema of `slipstream.yaml`: frozen pydantic models, unknown keys rejected.

Every model is immutable (`frozen=True`, tuples instead of lists), so a loaded config is a
snapshot the gateway can swap atomically on reload while in-flight requests keep the old one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from slipstream.config.secrets import Secret, header_value

ProviderName = Literal["openai", "azure", "anthropic", "bedrock", "gemini", "vertex", "local"]
Strategy = Literal["weighted", "least_outstanding", "lowest_latency", "lowest_cost"]
HeaderValue = Annotated[Secret, BeforeValidator(header_value)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeoutsConfig(_Frozen):
    connect: float = Field(5.0, gt=0)
    first_token: float = Field(60.0, gt=0)  # until response headers / the first stream event
    total: float = Field(600.0, gt=0)


class PricesConfig(_Frozen):
    """USD per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class DeploymentConfig(_Frozen):
    """One upstream that can serve a public model name."""

    provider: ProviderName
    model: str = Field(min_length=1)  # the upstream's own model name
    name: str = ""  # unique within its model; defaults to "<provider>/<model>"
    api_base: str | None = None
    api_key: Secret | None = None
    api_version: str | None = None
    region: str | None = None
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    weight: float = Field(1.0, ge=0)
    timeouts: TimeoutsConfig = TimeoutsConfig()
    context_window: int | None = Field(None, gt=0)
    prices: PricesConfig = PricesConfig()
    tags: tuple[str, ...] = ()
    headers: dict[str, HeaderValue] = Field(default_factory=dict)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _provider_needs(self) -> DeploymentConfig:
        if self.provider in ("openai", "azure") and not self.api_base:
            raise ValueError(f"provider {self.provider!r} needs an api_base")
        if self.provider == "azure" and not self.api_version:
            raise ValueError("provider 'azure' needs an api_version")
        if self.provider == "bedrock" and not self.region:
            raise ValueError("provider 'bedrock' needs a region")
        return self

    def secrets(self) -> Iterator[Secret]:
        for s in (self.api_key, self.aws_access_key_id, self.aws_secret_access_key):
            if s is not None:
                yield s
        if self.aws_session_token is not None:
            yield self.aws_session_token
        yield from (h for h in self.headers.values() if h.source != "literal")


class RoutingConfig(_Frozen):
    strategy: Strategy = "weighted"
    sticky_header: str | None = None  # e.g. "x-session-id": same value → same deployment

    @field_validator("sticky_header")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v


class RetriesConfig(_Frozen):
    max: int = Field(2, ge=0, le=20)  # retries per model, on top of the first try
    backoff_base_s: float = Field(0.05, ge=0)
    backoff_max_s: float = Field(5.0, ge=0)
    jitter: bool = True  # full jitter: uniform(0, min(max, base * 2**n))


class CircuitBreakerConfig(_Frozen):
    consecutive_failures: int = Field(5, ge=1)
    error_rate: float = Field(0.5, gt=0, le=1)
    window_s: float = Field(30.0, gt=0)
    min_requests: int = Field(10, ge=1)  # the error rate counts only with this many samples
    cooldown_s: float = Field(15.0, ge=0)
    half_open_probes: int = Field(1, ge=1)


class ModelLimitsConfig(_Frozen):
    """Limits on a public model across every key, e.g. to stay inside an upstream quota."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_parallel: int | None = Field(None, ge=1)


class ModelConfig(_Frozen):
    """A public model name and the deployments that serve it."""

    name: str = Field(min_length=1)
    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    retries: RetriesConfig = RetriesConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    limits: ModelLimitsConfig | None = None  # for all callers together (tenancy)
    max_request_bytes: int | None = Field(None, gt=0)  # larger request bodies get 413 (guardrails)

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        """Name unnamed deployments `<provider>/<model>` (`#2`, `#3`... when repeated)."""
        if not isinstance(data, dict) or not isinstance(data.get("deployments"), list | tuple):
            return data
        seen: dict[str, int] = {}
        named = []
        for d in data["deployments"]:
            if isinstance(d, dict) and not d.get("name"):
                base = f"{d.get('provider')}/{d.get('model')}"
                seen[base] = seen.get(base, 0) + 1
                d = {**d, "name": base if seen[base] == 1 else f"{base}#{seen[base]}"}
            named.append(d)
        return {**data, "deployments": named}

    @model_validator(mode="after")
    def _unique_deployments(self) -> ModelConfig:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique within a model: {dupes}")
        if self.name in self.fallbacks or self.name in self.context_window_fallbacks:
            raise ValueError("a model cannot fall back to itself")
        return self


class TenancyConfig(_Frozen):
    """Keys, limits, budgets and spend (active when `master_key` is set)."""

    key_refresh_s: float = Field(5.0, gt=0)  # how often keys/teams are reloaded from the DB
    spend_flush_s: float = Field(0.5, gt=0, le=60)  # ledger flush interval: the crash-loss bound
    spend_queue_max: int = Field(100_000, ge=1)  # rows held while the DB is down
    # who writes the ledger: a child process (default; keeps the database work off the event
    # loop's GIL) or a thread of the gateway (SQLite in memory always uses the thread)
    spend_writer: Literal["process", "thread"] = "process"
    default_max_tokens: int = Field(4096, ge=1)  # budget worst case when a request sets none
    budget_alert_url: str | None = None  # webhook POSTed at the thresholds below
    budget_alert_thresholds: tuple[float, ...] = (0.5, 0.8, 1.0)


class GatewayConfig(_Frozen):
    """The whole `slipstream.yaml`."""

    models: tuple[ModelConfig, ...] = ()
    master_key: Secret | None = None  # used by the tenancy issue
    database_url: Secret | None = None  # may embed a password
    redis_url: Secret | None = None
    tenancy: TenancyConfig = TenancyConfig()

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique: {dupes}")
        known = set(names)
        for i, m in enumerate(self.models):
            for field in ("fallbacks", "context_window_fallbacks"):
                missing = [f for f in getattr(m, field) if f not in known]
                if missing:
                    raise ValueError(f"models[{i}].{field}: unknown model(s) {missing}")
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def secrets(self) -> Iterator[Secret]:
        """Every credential in the config, for redaction of text that leaves the gateway."""
        for s in (self.master_key, self.database_url, self.redis_url):
            if s is not None:
                yield s
        for m in self.models:
            for d in m.deployments:
                yield from d.secrets()
