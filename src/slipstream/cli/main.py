"""`slipstream`: the command line. Each command group lives in its own module; this file
only assembles them into one typer app (the `slipstream` entry point)."""

from __future__ import annotations

import typer

from slipstream.cli import bench, config, keys, spend, teams
from slipstream.cli.serve import engine, serve

app = typer.Typer(
    name="slipstream",
    help="Take LLMs to production: an inference engine, an OpenAI-compatible server and "
    "gateway, and a load tester, in one tool.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(serve)
app.command()(engine)
app.add_typer(bench.app, name="bench")
app.add_typer(keys.app, name="keys")
app.add_typer(teams.app, name="teams")
app.add_typer(config.app, name="config")
app.command("spend")(spend.spend)


@app.command()
def models() -> None:
    """List the models known by short name (usable as `--model NAME`)."""
    from slipstream.engine.loader import ModelNotFoundError, known_model_names, resolve_model

    for name in known_model_names():
        try:
            where = str(resolve_model(name).path)
        except ModelNotFoundError as exc:
            where = f"not installed: {exc}"
        typer.echo(f"{name}\t{where}")


if __name__ == "__main__":
    app()
