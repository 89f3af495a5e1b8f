"""In-process admission: one replica's rate limits and budget books (see ../admission.py)."""

from slipstream.tenancy.local.admission import LocalAdmission

__all__ = ["LocalAdmission"]
