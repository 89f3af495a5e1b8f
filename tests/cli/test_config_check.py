"""`slipstream config check`: the models and the stage chain in request order, no side effects."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from slipstream.cli.main import app

runner = CliRunner()


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "slipstream.yaml"
    path.write_text(json.dumps(cfg))
    return path


def test_the_chain_is_printed_in_order_with_each_stages_feature_and_hooks(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MASTER", "sk-master-0123456789")
    db = tmp_path / "tenancy.db"
    cfg = {
        "master_key": "env:MASTER",
        "database_url": f"sqlite:///{db}",
        "models": [{"name": "chat", "deployments": [{"provider": "local", "model": "m"}]}],
    }
    out = runner.invoke(app, ["config", "check", "--config", str(write(tmp_path, cfg)), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    chain = [(s["stage"], s["phase"], s["feature"], s["hooks"]) for s in report["chain"]]
    assert chain == [
        ("request_id", "identify", "gateway", "pre"),
        ("meter", "observe", "gateway", "post"),
        ("auth", "authenticate", "tenancy", "pre"),
        ("route", "route", "gateway", "pre"),
        ("size_cap", "admit", "guardrails", "pre"),
        ("limits", "admit", "tenancy", "pre, post"),
        ("spend", "bill", "tenancy", "on_chunk, post"),
    ]
    assert report["models"] == [{"name": "chat", "deployments": ["local/m"], "fallbacks": []}]
    assert not db.exists()  # checking opens no database

    table = runner.invoke(app, ["config", "check", "--config", str(write(tmp_path, cfg))])
    assert table.exit_code == 0 and "Stage chain" in table.output and "tenancy" in table.output


def test_without_tenancy_the_chain_has_only_the_gateway_and_guardrails(tmp_path: Path) -> None:
    out = runner.invoke(app, ["config", "check", "--json"])
    assert out.exit_code == 0, out.output
    stages = [s["stage"] for s in json.loads(out.output)["chain"]]
    assert stages == ["request_id", "meter", "route", "size_cap"]


def test_an_invalid_config_exits_1_naming_the_field(tmp_path: Path) -> None:
    cfg = {"models": [{"name": "chat", "deployments": [{"provider": "openai", "model": "m"}]}]}
    out = runner.invoke(app, ["config", "check", "--config", str(write(tmp_path, cfg))])
    assert out.exit_code == 1
    assert "models[0].deployments[0]" in out.output and "api_base" in out.output
