"""Reload `slipstream.yaml` on SIGHUP or an admin call, never dropping in-flight requests.

A bad file keeps the running config: the error (field paths, no values) is logged and
returned, so an operator's typo cannot take the gateway down.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from slipstream.config.loader import ConfigError, load_config
from slipstream.gateway.pipeline import Gateway

logger = logging.getLogger("slipstream.gateway")


class ConfigReloader:
    def __init__(self, gateway: Gateway, path: str | Path) -> None:
        self.gateway = gateway
        self.path = Path(path)
        self.reloads = 0

    def reload(self) -> ConfigError | None:
        """Load the file and swap it in; on error keep the old config and return the error."""
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            logger.error("config reload failed, keeping the running config: %s", exc)
            return exc
        try:
            self.gateway.reload(config)
        except ValueError as exc:  # a deployment this process cannot build (e.g. no engine)
            logger.error("config reload failed, keeping the running config: %s", exc)
            return ConfigError(str(self.path), [str(exc)])
        self.reloads += 1
        logger.info("config reloaded from %s (%d models)", self.path, len(config.models))
        return None

    def install_sighup(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Reload on SIGHUP (Unix; call from the thread running the event loop)."""
        (loop or asyncio.get_running_loop()).add_signal_handler(signal.SIGHUP, self.reload)

    def remove_sighup(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        (loop or asyncio.get_running_loop()).remove_signal_handler(signal.SIGHUP)
