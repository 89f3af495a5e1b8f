"""Admin API and CLI over real HTTP: keys, teams, orgs and spend, behind the master key; a key
made by the CLI works at once through the gateway with the official OpenAI SDK."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import typer
import uvicorn
from tests.gateway.fakes import Fleet
from typer.testing import CliRunner

from slipstream.cli import keys as keys_cli
from slipstream.cli import spend as spend_cli
from slipstream.cli import teams as teams_cli
from slipstream.server.admin_schemas import admin_openapi_paths
from slipstream.server.admin_tenancy import admin_routes
from slipstream.server.app import create_app
from slipstream.store import Store
from slipstream.tenancy.runtime import Tenancy

from .conftest import MASTER, tenant_gateway

SPEND = typer.Typer()
SPEND.command()(spend_cli.spend)  # as `slipstream spend` registers it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(sqlite_store: Store) -> Iterator[str]:
    """The real server app over a tenancy gateway, admin routes mounted, on a real port."""
    tenancy = Tenancy(sqlite_store, master_key=MASTER)
    gw = tenant_gateway(tenancy, Fleet(), prices={"input_per_mtok": 1, "output_per_mtok": 2})
    app = create_app(gw)
    app.router.routes.extend(admin_routes(tenancy))  # how the server mounts them

    async def serve() -> None:
        await tenancy.start()
        try:
            await srv.serve()
        finally:
            await tenancy.aclose()
            await gw.aclose()

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def cli(app: Any, url: str, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--url", url, "--master-key", MASTER])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_admin_api_needs_the_master_key(server: str) -> None:
    r = httpx.post(server + "/admin/keys", json={})
    assert r.status_code == 401 and "master_key" in r.json()["error"]["message"]
    r = httpx.get(server + "/admin/keys", headers={"Authorization": "Bearer sk-wrong"})
    assert r.status_code == 401
    h = {"Authorization": f"Bearer {MASTER}"}
    r = httpx.post(server + "/admin/keys", json={"rpm": 0}, headers=h)
    assert r.status_code == 400 and "rpm" in r.json()["error"]["message"]
    r = httpx.post(server + "/admin/keys", json={"team": "nope"}, headers=h)
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    r = httpx.post(server + "/admin/keys", json={"bogus": 1}, headers=h)
    assert r.status_code == 400


def test_issue_example_request_shape(server: str) -> None:
    h = {"Authorization": f"Bearer {MASTER}"}
    assert (
        httpx.post(server + "/admin/teams", json={"name": "search"}, headers=h).status_code == 200
    )
    body = {"team": "search", "models": ["chat"], "rpm": 600, "tpm": 100000, "max_parallel": 8,
            "budget_usd": 50, "budget_window": "monthly"}  # fmt: skip
    r = httpx.post(server + "/admin/keys", json=body, headers=h).json()
    assert r["key"].startswith("sk-ss-") and r["id"].startswith("key_")
    shown = httpx.get(server + f"/admin/keys/{r['id']}", headers=h).json()
    assert "key" not in shown and shown["budget_usd"] == 50 and shown["models"] == ["chat"]
    assert set(admin_openapi_paths()) >= {"/admin/keys", "/admin/spend", "/admin/teams"}


def test_cli_round_trip_and_spend_reports(server: str) -> None:
    org_id = cli(teams_cli.app, server, "create-org", "acme", "--budget-usd", "100").strip()
    assert org_id.startswith("org_")
    team_id = cli(
        teams_cli.app, server, "create", "search", "--org", "acme", "--rpm", "100"
    ).strip()
    assert "search" in cli(teams_cli.app, server, "list")
    out = cli(keys_cli.app, server, "create", "--team", "search", "--models", "chat",
              "--rpm", "600", "--budget-usd", "5", "--tag", "prod", "--json")  # fmt: skip
    made = json.loads(out)
    key = made["key"]
    assert made["team_id"] == team_id and made["org_id"] == org_id

    client = openai.OpenAI(base_url=server + "/v1", api_key=key, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])

    listed = cli(keys_cli.app, server, "list", "--json")
    assert key not in listed and json.loads(listed)[0]["id"] == made["id"]
    table = cli(keys_cli.app, server, "list")
    assert made["id"] in table and key not in table

    time.sleep(0.8)  # one ledger flush interval
    rows = json.loads(cli(SPEND, server, "--group-by", "key", "--format", "json"))
    assert rows[0]["group"] == made["id"] and rows[0]["requests"] == 3
    assert rows[0]["cost_micro"] == 3 * (3 * 1 + 4 * 2)  # fake usage 3 in / 4 out
    text = cli(SPEND, server, "--group-by", "tag", "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["x_Group"] == "prod" and row["BilledCost"] == "0.000033"
    assert row["BillingCurrency"] == "USD" and row["ChargeCategory"] == "Usage"
    assert "total" in cli(SPEND, server, "--group-by", "team")
    series = json.loads(
        cli(SPEND, server, "--group-by", "day", "--key", made["id"], "--format", "json")
    )
    assert len(series) == 1 and series[0]["requests"] == 3  # one day of this key's spend
    assert (
        json.loads(cli(SPEND, server, "--group-by", "day", "--key", "nope", "--format", "json"))
        == []
    )

    rotated = cli(keys_cli.app, server, "rotate", made["id"]).strip()
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    new_client = openai.OpenAI(base_url=server + "/v1", api_key=rotated, max_retries=0)
    new_client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    cli(keys_cli.app, server, "revoke", made["id"])
    with pytest.raises(openai.AuthenticationError) as e:
        new_client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
    assert "revoked" in str(e.value)
    assert json.loads(cli(keys_cli.app, server, "show", made["id"]))["revoked"] is True


def test_cli_reports_errors_without_a_traceback(server: str) -> None:
    result = CliRunner().invoke(
        keys_cli.app, ["show", "key_nope", "--url", server, "--master-key", MASTER]
    )
    assert result.exit_code == 1 and "404" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(keys_cli.app, ["list", "--url", server, "--master-key", "sk-bad"])
    assert result.exit_code == 1 and "401" in result.output


def test_limits_and_streams_through_the_real_server(server: str) -> None:
    h = {"Authorization": f"Bearer {MASTER}"}
    made = httpx.post(server + "/admin/keys", json={"rpm": 3}, headers=h).json()
    client = openai.OpenAI(base_url=server + "/v1", api_key=made["key"], max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    chunks = list(client.chat.completions.create(model="chat", messages=msgs, stream=True))
    assert chunks and all(c.usage is None for c in chunks)  # usage stays hidden unless asked
    client.chat.completions.create(model="chat", messages=msgs)
    client.chat.completions.create(model="chat", messages=msgs)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="chat", messages=msgs)
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.code == "rate_limit_exceeded" and "requests per minute" in e.value.message
    time.sleep(0.8)
    rows = httpx.get(server + "/admin/spend", params={"group_by": "key"}, headers=h).json()
    (row,) = rows["data"]
    assert row["group"] == made["id"] and row["requests"] == 3
    # fake upstream usage: 3 in / 4 out non-streamed, 3 in / 3 out (3 chunks) streamed
    assert row["cost_micro"] == 2 * (3 * 1 + 4 * 2) + (3 * 1 + 3 * 2)


def test_anthropic_clients_authenticate_with_x_api_key(server: str) -> None:
    import anthropic

    h = {"Authorization": f"Bearer {MASTER}"}
    made = httpx.post(server + "/admin/keys", json={"models": ["chat"]}, headers=h).json()
    ok = anthropic.Anthropic(base_url=server, api_key=made["key"], max_retries=0)
    msg = ok.messages.create(
        model="chat", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.content
    bad = anthropic.Anthropic(base_url=server, api_key="sk-ss-" + "z" * 43, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(
            model="chat", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
