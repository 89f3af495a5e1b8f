"""Keys, teams and orgs held in memory for the request path, refreshed in the background.

Lookups are a SHA-256 and a dict read. A refresh reads only keys changed since the last one
(with an overlap for clock skew between replicas; a full reload every `FULL_EVERY` refreshes)
and replaces the whole snapshot in one assignment; if the database is unreachable the last snapshot stays in use (fail-open on
known keys, so a database blip never turns into 401s for everyone) and the error is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from slipstream.store import Store
from slipstream.store.records import KeyRecord, OrgRecord, TeamRecord, as_utc, utcnow

logger = logging.getLogger("slipstream.tenancy.keys")
SKEW = dt.timedelta(seconds=60)
FULL_EVERY = 60


@dataclass(frozen=True)
class TenantSnapshot:
    keys: dict[str, KeyRecord] = field(default_factory=dict)  # by SHA-256 of the key
    teams: dict[str, TeamRecord] = field(default_factory=dict)  # by id
    orgs: dict[str, OrgRecord] = field(default_factory=dict)  # by id
    version: int = 0  # one more at each refresh: what was worked out from records keys on it

    @classmethod
    def load(
        cls,
        store: Store,
        previous: TenantSnapshot | None,
        since: dt.datetime | None,
        version: int = 0,
    ) -> TenantSnapshot:
        t = store.tenants
        if previous is None or since is None:
            by_id = {k.id: k for k in t.list_keys()}
        else:
            by_id = {k.id: k for k in previous.keys.values()}
            by_id.update((k.id, k) for k in t.keys_changed_since(since))
        return cls(
            {k.key_hash: k for k in by_id.values()},
            {x.id: x for x in t.list_teams()},
            {o.id: o for o in t.list_orgs()},
            version,
        )


class KeyCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.snapshot = TenantSnapshot()
        self.loaded = False
        self._failing = False
        self._refreshes = 0
        self._since: dt.datetime | None = None

    def refresh(self) -> bool:
        """Reload from the database (blocking: call from a thread). False if it failed."""
        started = utcnow()
        full = not self.loaded or self._refreshes % FULL_EVERY == 0
        try:
            snap = TenantSnapshot.load(
                self.store,
                None if full else self.snapshot,
                None if full else self._since,
                self.snapshot.version + 1,
            )
        except Exception as e:
            if not self._failing:
                logger.error(
                    "key cache refresh failed (%s); serving the last snapshot", type(e).__name__
                )
            self._failing = True
            return False
        if self._failing:
            logger.warning("key cache refresh recovered")
        self._failing = False
        self.snapshot = snap
        self.loaded = True
        self._refreshes += 1
        self._since = as_utc(started - SKEW)
        return True
