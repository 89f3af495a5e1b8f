"""`slipstream teams create|list|create-org|orgs`: teams and orgs, over the admin API."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slipstream.cli.keys import JsonOpt, MasterOpt, UrlOpt, call, client, limits_body

app = typer.Typer(help="Create and list teams and organisations.", no_args_is_help=True)


@app.command()
def create(
    name: str,
    org: Annotated[str | None, typer.Option(help="Org id or name.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated allowed models.")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute (whole team).")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute (whole team).")] = None,
    max_parallel: Annotated[int | None, typer.Option(help="Concurrent requests.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Budget in USD per window.")] = None,
    budget_window: Annotated[str | None, typer.Option(help="daily, weekly or monthly.")] = None,
    url: UrlOpt = None,
    master_key: MasterOpt = None,
) -> None:
    """Create a team."""
    body = {"name": name, **limits_body(models, rpm, tpm, max_parallel, budget_usd, budget_window)}
    if org is not None:
        body["org"] = org
    out = call(client(url, master_key), "POST", "/admin/teams", body)
    typer.echo(out["id"])


@app.command("list")
def list_(url: UrlOpt = None, master_key: MasterOpt = None, as_json: JsonOpt = False) -> None:
    """List teams."""
    rows = call(client(url, master_key), "GET", "/admin/teams")["data"]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("id", "name", "org", "models", "rpm", "tpm", "budget")
    for t in rows:
        budget = f"${t['budget_usd']:g}/{t['budget_window']}" if t["budget_usd"] is not None else ""
        models = ",".join(t["models"]) if t["models"] is not None else "*"
        table.add_row(t["id"], t["name"], t["org_id"] or "", models, str(t["rpm"] or ""),
                      str(t["tpm"] or ""), budget)  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@app.command("create-org")
def create_org(
    name: str,
    budget_usd: Annotated[float | None, typer.Option(help="Budget in USD per window.")] = None,
    budget_window: Annotated[str | None, typer.Option(help="daily, weekly or monthly.")] = None,
    url: UrlOpt = None,
    master_key: MasterOpt = None,
) -> None:
    """Create an organisation (teams belong to one)."""
    body: dict[str, object] = {"name": name}
    if budget_usd is not None:
        body["budget_usd"] = budget_usd
    if budget_window is not None:
        body["budget_window"] = budget_window
    typer.echo(call(client(url, master_key), "POST", "/admin/orgs", body)["id"])


@app.command()
def orgs(url: UrlOpt = None, master_key: MasterOpt = None) -> None:
    """List organisations as JSON."""
    typer.echo(json.dumps(call(client(url, master_key), "GET", "/admin/orgs")["data"], indent=2))
