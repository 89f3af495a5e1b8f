"""Target names and what they are: the current checkout's Slipstream and its baseline twins.

  baseline           `slipstream` run from another checkout's code (--baseline-src DIR, e.g. a
                     git worktree's `src/`): the same `.venv/bin/slipstream` with
                     `PYTHONPATH=DIR`, so it imports that code, with the same config
  baseline-tenancy   `slipstream-tenancy` likewise, with its own fresh database (or SQLite
                     file) and its own virtual key

Checks that used to read `name == "slipstream-tenancy"` use `is_tenancy(name)`, so the
baseline twin runs the same way.
"""

from __future__ import annotations

SLIPSTREAM = ("slipstream", "slipstream-tenancy")
BASELINE = ("baseline", "baseline-tenancy")
TENANCY = ("slipstream-tenancy", "baseline-tenancy")
# The current target each baseline target is compared with, and back.
TWIN = {"baseline": "slipstream", "baseline-tenancy": "slipstream-tenancy"}
TWIN |= {v: k for k, v in TWIN.items()}


def is_slipstream(name: str) -> bool:
    """A `slipstream serve` target, from this checkout or the baseline's."""
    return name in SLIPSTREAM or name in BASELINE


def is_tenancy(name: str) -> bool:
    """A Slipstream target with keys, limits, budgets and the spend ledger on."""
    return name in TENANCY


def is_baseline(name: str) -> bool:
    """A Slipstream target that runs the --baseline-src code."""
    return name in BASELINE
