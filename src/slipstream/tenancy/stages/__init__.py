"""The tenancy stages, in chain order: auth (who is asking), limits (rate limits and budgets,
admitted together) and spend (price and ledger row). `Tenancy.stages()` hands them to the
gateway; each declares its phase."""

from slipstream.tenancy.stages.auth import AuthStage
from slipstream.tenancy.stages.limits import LimitsStage
from slipstream.tenancy.stages.spend import SpendStage

__all__ = ["AuthStage", "LimitsStage", "SpendStage"]
