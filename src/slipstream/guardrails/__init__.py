"""Guardrails: checks on what goes to a model and what comes back. Today: a per-model cap on
the request size (size_cap.py); PII masking and injection checks will join as stages here.

`Guardrails` is the gateway feature: the server hands it to the gateway, which places its
stages by phase.
"""

from slipstream.guardrails.feature import Guardrails
from slipstream.guardrails.size_cap import RequestSizeCap

__all__ = ["Guardrails", "RequestSizeCap"]
