"""`slipstream keys create|list|show|revoke|rotate`: virtual keys, over the admin API."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from slipstream.tenancy.admin_client import KEY_ENV, URL_ENV, AdminClient, AdminError

app = typer.Typer(help="Create and manage virtual API keys.", no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option("--url", envvar=URL_ENV, help="Gateway URL.")]
MasterOpt = Annotated[
    str | None, typer.Option("--master-key", envvar=KEY_ENV, help="The gateway's master key.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def client(url: str | None, master_key: str | None) -> AdminClient:
    try:
        return AdminClient(url, master_key)
    except AdminError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def call(c: AdminClient, method: str, path: str, body: Any = None, **params: Any) -> Any:
    try:
        return c.call(method, path, body, **params)
    except AdminError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


def limits_body(
    models: str | None, rpm: int | None, tpm: int | None, max_parallel: int | None,
    budget_usd: float | None, budget_window: str | None,
) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {
        "rpm": rpm, "tpm": tpm, "max_parallel": max_parallel,
        "budget_usd": budget_usd, "budget_window": budget_window,
    }  # fmt: skip
    if models is not None:
        body["models"] = [m.strip() for m in models.split(",") if m.strip()]
    return {k: v for k, v in body.items() if v is not None}


def show_keys(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "hint", "name", "team", "models", "rpm", "tpm", "budget", "state")
    for k in rows:
        budget = f"${k['budget_usd']:g}/{k['budget_window']}" if k["budget_usd"] is not None else ""
        state = (
            "revoked"
            if k["revoked"]
            else (f"expires {k['expires_at']}" if k["expires_at"] else "active")
        )
        table.add_row(
            k["id"], k["hint"], k["name"] or "", k["team_id"] or "",
            ",".join(k["models"]) if k["models"] is not None else "*",
            str(k["rpm"] or ""), str(k["tpm"] or ""), budget, state,
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@app.command()
def create(
    team: Annotated[str | None, typer.Option(help="Team id or name.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated allowed models.")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    max_parallel: Annotated[int | None, typer.Option(help="Concurrent requests.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Budget in USD per window.")] = None,
    budget_window: Annotated[str | None, typer.Option(help="daily, weekly or monthly.")] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="Expire after N days.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A spend tag (repeatable).")] = None,
    url: UrlOpt = None,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key. Its material is printed once: store it now."""
    body = limits_body(models, rpm, tpm, max_parallel, budget_usd, budget_window)
    body.update({k: v for k, v in (("team", team), ("name", name)) if v is not None})
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    if tag:
        body["tags"] = tag
    out = call(client(url, master_key), "POST", "/admin/keys", body)
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(out["key"])
    typer.echo(f"id: {out['id']}  (the key is shown only once)", err=True)


@app.command("list")
def list_(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    url: UrlOpt = None,
    master_key: MasterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List keys (hints only, never key material)."""
    out = call(client(url, master_key), "GET", "/admin/keys", team=team)
    if as_json:
        typer.echo(json.dumps(out["data"]))
    else:
        show_keys(out["data"])


@app.command()
def show(key_id: str, url: UrlOpt = None, master_key: MasterOpt = None) -> None:
    """Show one key as JSON."""
    typer.echo(json.dumps(call(client(url, master_key), "GET", f"/admin/keys/{key_id}"), indent=2))


@app.command()
def revoke(key_id: str, url: UrlOpt = None, master_key: MasterOpt = None) -> None:
    """Revoke a key: it stops working within the gateways' key refresh interval."""
    call(client(url, master_key), "POST", f"/admin/keys/{key_id}/revoke")
    typer.echo(f"revoked {key_id}")


@app.command()
def rotate(key_id: str, url: UrlOpt = None, master_key: MasterOpt = None) -> None:
    """New material for a key (same id, limits and spend); prints the new key once."""
    out = call(client(url, master_key), "POST", f"/admin/keys/{key_id}/rotate")
    typer.echo(out["key"])
