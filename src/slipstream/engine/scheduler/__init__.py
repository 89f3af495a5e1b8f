"""Token-budget scheduler (pure Python, no torch)."""

from slipstream.engine.scheduler.scheduler import RequestTooLongError, Scheduler
from slipstream.engine.scheduler.stop_checker import check_stop

__all__ = ["RequestTooLongError", "Scheduler", "check_stop"]
