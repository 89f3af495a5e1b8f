"""`Tenancy`: the store, caches, admission (limits, budgets), prices and ledger writer of one
gateway.

Built once per process from the config; `start()` loads keys and starts the background work
(key refresh, budget seeding, ledger flusher), `aclose()` flushes and stops it. It is the
gateway feature "tenancy": `stages()` gives the gateway auth, limits and spend, each of which
names its own phase (the gateway's chain places them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from slipstream.config.schema import GatewayConfig, TenancyConfig
from slipstream.gateway.stage import Stage
from slipstream.store import Store
from slipstream.store.records import WINDOWS, utcnow, window_start
from slipstream.tenancy.admission import Admission, BudgetScope
from slipstream.tenancy.alerts import BudgetAlerts
from slipstream.tenancy.keycache import KeyCache
from slipstream.tenancy.ledger import LedgerProcess, SpendWriter, process_supported
from slipstream.tenancy.local import LocalAdmission
from slipstream.tenancy.prices import PriceTable, unpriced
from slipstream.tenancy.shared import RedisAdmission
from slipstream.tenancy.stages import AuthStage, LimitsStage, SpendStage

logger = logging.getLogger("slipstream.tenancy")
SEED_SCOPES = ("key", "team", "org")


class Tenancy:
    name = "tenancy"

    def __init__(
        self,
        store: Store,
        *,
        master_key: str | None = None,
        config: TenancyConfig | None = None,
        redis: aioredis.Redis | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.master_key = master_key
        self.config = config or TenancyConfig()
        self.redis = redis
        self.cache = KeyCache(store)
        self.prices = PriceTable()
        # Rate limits and budgets, admitted together (with Redis: one script call each way).
        self.admission: Admission = RedisAdmission(redis) if redis is not None else LocalAdmission()
        self.alerts = BudgetAlerts(
            self.config.budget_alert_url, self.config.budget_alert_thresholds, redis
        )
        alerts = self.config.budget_alert_url is not None  # nobody reads crossings without
        if isinstance(self.admission, LocalAdmission):
            self.admission.budgets.report_crossings = alerts
        elif isinstance(self.admission, RedisAdmission):
            self.admission.report_crossings = alerts
        self.writer: SpendWriter | LedgerProcess
        if self.config.spend_writer == "process" and process_supported(store.url):
            assert store.url is not None
            self.writer = LedgerProcess(
                store.url,
                store.schema,
                interval_s=self.config.spend_flush_s,
                max_queue=self.config.spend_queue_max,
                registry=registry,
            )
        else:
            self.writer = SpendWriter(
                store.spend.insert,
                interval_s=self.config.spend_flush_s,
                max_queue=self.config.spend_queue_max,
                registry=registry,
            )
        self._task: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_config(
        cls, config: GatewayConfig, registry: CollectorRegistry | None = None
    ) -> Tenancy:
        """Open (and migrate) the database named by the config. Blocking: call at start-up."""
        url = config.database_url.reveal() if config.database_url else None
        redis = aioredis.from_url(
            config.redis_url.reveal(), socket_timeout=0.5, socket_connect_timeout=0.5
        ) if config.redis_url else None  # fmt: skip
        tenancy = cls(
            Store.open(url),
            master_key=config.master_key.reveal() if config.master_key else None,
            config=config.tenancy,
            redis=redis,
            registry=registry,
        )
        deployments = [d for m in config.models for d in m.deployments]
        missing = unpriced(tenancy.prices, deployments)
        if missing:
            logger.warning(
                "no price for %s: their spend is recorded as $0 until `prices:` is set",
                ", ".join(missing),
            )
        return tenancy

    @property
    def auth_enabled(self) -> bool:
        return self.master_key is not None

    def stages(self) -> list[Stage]:
        """Auth (phase authenticate), limits and budgets (admit), spend (bill)."""
        return [AuthStage(self), LimitsStage(self), SpendStage(self)]

    async def settle(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run a post-call settlement: inline in memory mode (no I/O), as a background task
        with Redis, so the client never waits on those round trips."""
        if self.redis is None:
            await work
            return
        task = asyncio.get_running_loop().create_task(work)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def start(self) -> None:
        self.writer.start()
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def refresh(self) -> None:
        """Reload keys and seed budget books from the ledger (both off the event loop)."""
        self.admission.prune()
        if await asyncio.to_thread(self.cache.refresh):
            try:
                await self._seed_budgets()
            except Exception as e:
                logger.warning("budget seeding failed: %s", type(e).__name__)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await asyncio.to_thread(self.writer.close)
        await self.alerts.aclose()
        await self.admission.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await asyncio.to_thread(self.store.close)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.key_refresh_s)
            await self.refresh()

    async def _seed_budgets(self) -> None:
        snap = self.cache.snapshot
        scopes: list[tuple[str, str, BudgetScope]] = []
        for k in snap.keys.values():
            if k.limits.budget_micro is not None and not k.revoked:
                scopes.append(
                    (
                        "key",
                        k.id,
                        BudgetScope(f"key:{k.id}", k.limits.budget_micro, k.limits.budget_window),
                    )
                )
        for tm in snap.teams.values():
            if tm.limits.budget_micro is not None:
                scopes.append(
                    (
                        "team",
                        tm.id,
                        BudgetScope(
                            f"team:{tm.id}", tm.limits.budget_micro, tm.limits.budget_window
                        ),
                    )
                )
        for o in snap.orgs.values():
            if o.budget_micro is not None:
                scopes.append(
                    ("org", o.id, BudgetScope(f"org:{o.id}", o.budget_micro, o.budget_window))
                )
        if not scopes:
            return
        now = utcnow()
        needed = {(kind, s.window or "daily") for kind, _, s in scopes}
        totals: dict[tuple[str, str], dict[str, int]] = {}
        for kind, window in needed:
            assert window in WINDOWS
            since = window_start(window, now)
            totals[(kind, window)] = await asyncio.to_thread(
                self.store.spend.window_totals, kind, since
            )
        for kind, ident, s in scopes:
            spent = totals[(kind, s.window or "daily")].get(ident, 0)
            if spent:
                await self.admission.seed(s, spent)
