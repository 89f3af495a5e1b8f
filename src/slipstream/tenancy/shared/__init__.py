"""Shared admission: rate limits and budgets kept in Redis for every replica, spent mostly
from leases (see admission.py here for the design, scripts.py for the Redis data layout)."""

from slipstream.tenancy.shared.admission import RedisAdmission

__all__ = ["RedisAdmission"]
