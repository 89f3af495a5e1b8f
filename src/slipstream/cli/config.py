"""`slipstream config check`: validate slipstream.yaml and print what `serve` would build from
it — the models and, in order, the stage chain every request goes through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slipstream.config.loader import ConfigError, load_config
from slipstream.config.schema import GatewayConfig
from slipstream.server.features import describe_chain
from slipstream.server.gateway_setup import default_config

app = typer.Typer(help="Check a slipstream.yaml before serving it.", no_args_is_help=True)
DEFAULT_MODEL = "smollm2-135m"


@app.command()
def check(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The slipstream.yaml to check. Without it: the zero-setup default "
            "(one model served by the embedded engine, no tenancy).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Validate the config and print its models and the stage chain, in the order a request
    meets the stages (`post` hooks run in the reverse order). Opens no database and starts
    nothing; exits 1 naming every invalid field."""
    try:
        cfg = load_config(config) if config is not None else default_config(DEFAULT_MODEL)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    rows = describe_chain(cfg).describe()
    if as_json:
        stages = [
            {"position": n, "phase": phase, "stage": name, "feature": feature, "hooks": hooks}
            for n, phase, name, feature, hooks in rows
        ]
        typer.echo(json.dumps({"models": _models(cfg), "chain": stages}, indent=2))
        return
    console = Console()
    console.print(f"[green]✓[/green] {config or 'default config'} is valid")
    table = Table("model", "deployments", "fallbacks", title="Models")
    for m in cfg.models:
        table.add_row(
            m.name, ", ".join(d.name for d in m.deployments), ", ".join(m.fallbacks) or "-"
        )
    console.print(table)
    chain = Table("#", "phase", "stage", "feature", "hooks", title="Stage chain (request order)")
    for n, phase, name, feature, hooks in rows:
        chain.add_row(str(n), phase, name, feature, hooks)
    console.print(chain)


def _models(cfg: GatewayConfig) -> list[dict[str, object]]:
    return [
        {
            "name": m.name,
            "deployments": [d.name for d in m.deployments],
            "fallbacks": list(m.fallbacks),
        }
        for m in cfg.models
    ]
