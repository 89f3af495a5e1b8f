"""Reloading from the file: on demand and on SIGHUP; a broken file keeps the running config."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from slipstream.config import load_config
from slipstream.gateway import Gateway
from slipstream.gateway.reloader import ConfigReloader

from .fakes import Fleet, chat, run

ONE = """
models:
  - name: chat
    deployments:
      - {provider: local, model: one, name: one}
"""
TWO = (
    ONE
    + """
  - name: second
    deployments:
      - {provider: local, model: two, name: two}
"""
)


def test_reload_on_demand_and_keep_old_config_on_error(tmp_path, caplog):
    path = tmp_path / "slipstream.yaml"
    path.write_text(ONE)
    fleet = Fleet()
    gw = Gateway(load_config(path), fleet.factory)
    reloader = ConfigReloader(gw, path)

    path.write_text(TWO)
    assert reloader.reload() is None
    assert [m["id"] for m in gw.models()] == ["chat", "second"]

    path.write_text(TWO.replace("provider: local, model: two", "provider: local, modle: two"))
    with caplog.at_level(logging.ERROR, logger="slipstream.gateway"):
        error = reloader.reload()
    assert error is not None and "models[1].deployments[0].modle" in str(error)
    assert "keeping the running config" in caplog.text
    assert [m["id"] for m in gw.models()] == ["chat", "second"]
    assert reloader.reloads == 1


def test_sighup_reloads(tmp_path):
    path = tmp_path / "slipstream.yaml"
    path.write_text(ONE)
    fleet = Fleet()
    gw = Gateway(load_config(path), fleet.factory)
    reloader = ConfigReloader(gw, path)

    async def go():
        reloader.install_sighup()
        try:
            path.write_text(TWO)
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                if reloader.reloads:
                    break
                await asyncio.sleep(0.01)
            return await gw.handle("chat/completions", chat("second"), None, {})
        finally:
            reloader.remove_sighup()

    assert run(go).deployment == "two"
