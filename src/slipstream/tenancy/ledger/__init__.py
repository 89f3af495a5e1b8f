"""The spend ledger's writers: rows leave the request path here."""

from slipstream.tenancy.ledger.process import LedgerProcess, process_supported
from slipstream.tenancy.ledger.writer import SpendWriter

__all__ = ["LedgerProcess", "SpendWriter", "process_supported"]
