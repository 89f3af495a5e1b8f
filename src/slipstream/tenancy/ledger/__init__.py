"""The spend ledger's writers: rows leave the request path here."""

from slipstream.tenancy.ledger.base import LedgerWriter, SpendWriterMetrics
from slipstream.tenancy.ledger.process import LedgerProcess, process_supported
from slipstream.tenancy.ledger.writer import SpendWriter

__all__ = [
    "LedgerProcess",
    "LedgerWriter",
    "SpendWriter",
    "SpendWriterMetrics",
    "process_supported",
]
