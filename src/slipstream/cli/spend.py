"""`slipstream spend`: who spent what, from the gateway's ledger (over the admin API).

`--format csv` writes FOCUS-style columns (BilledCost, BillingCurrency, ChargePeriodStart...)
with `x_`-prefixed extensions, so the rows load next to cloud billing exports.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from slipstream.cli.keys import MasterOpt, UrlOpt, call, client

FOCUS_COLUMNS = (
    "ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "EffectiveCost", "ListCost",
    "BillingCurrency", "ChargeCategory", "ServiceName", "ConsumedQuantity", "ConsumedUnit",
    "x_GroupBy", "x_Group", "x_Requests", "x_PromptTokens", "x_CachedTokens",
    "x_CompletionTokens",
)  # fmt: skip


def focus_row(r: dict[str, Any], group_by: str, since: str | None, until: str | None) -> list[Any]:
    start = r["group"] if group_by == "day" else (since or "")
    end = r["group"] if group_by == "day" else (until or "")
    cost = f"{r['cost_micro'] / 1e6:.6f}"
    tokens = r.get("prompt_tokens", 0) + r.get("completion_tokens", 0)
    return [
        start, end, cost, cost, cost, "USD", "Usage", "Slipstream LLM Gateway", tokens, "Tokens",
        group_by, r["group"] if r["group"] is not None else "", r["requests"],
        r.get("prompt_tokens", ""), r.get("cached_tokens", ""), r.get("completion_tokens", ""),
    ]  # fmt: skip


def spend(
    group_by: Annotated[
        str, typer.Option(help="key, team, org, model, tag, day, deployment or end_user.")
    ] = "key",
    since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD), UTC.")] = None,
    until: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD), UTC.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this key id.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team id.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    url: UrlOpt = None,
    master_key: MasterOpt = None,
) -> None:
    """Spend totals grouped by key, team, org, model, tag or day (`--group-by day --key ID`:
    one key's daily time series)."""
    if fmt not in ("table", "csv", "json"):
        typer.echo("error: --format must be table, csv or json", err=True)
        raise typer.Exit(2)
    out = call(
        client(url, master_key), "GET", "/admin/spend",
        group_by=group_by, since=since, until=until, key=key, team=team, model=model,
    )  # fmt: skip
    rows = out["data"]
    if fmt == "json":
        typer.echo(json.dumps(rows))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(FOCUS_COLUMNS)
        w.writerows(focus_row(r, group_by, since, until) for r in rows)
    else:
        table = Table(group_by, "requests", "prompt", "cached", "completion", "cost (USD)")
        for r in rows:
            table.add_row(
                str(r["group"]), str(r["requests"]), str(r.get("prompt_tokens", "")),
                str(r.get("cached_tokens", "")), str(r.get("completion_tokens", "")),
                f"{r['cost_micro'] / 1e6:.6f}",
            )  # fmt: skip
        total = sum(r["cost_micro"] for r in rows) / 1e6
        table.add_row("total", "", "", "", "", f"{total:.6f}")
        Console(width=None if sys.stdout.isatty() else 200).print(table)
