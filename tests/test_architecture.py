"""The dependency contract of docs/architecture.md, checked with import-linter over src/.

The contract lives in pyproject.toml ([tool.importlinter]): top-level packages in layers
(cli → server → features → gateway → providers → protocol/config), siblings in a layer
independent, so the gateway imports no feature, engine and bench import nothing of server or
gateway, protocol and config import nothing of ours, and no two packages form a cycle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [LINT, "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_source_keeps_the_dependency_contract() -> None:
    out = lint(ROOT / "src")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("gateway/probe.py", "import slipstream.tenancy.runtime"),  # the core imports a feature
        ("tenancy/probe.py", "import slipstream.guardrails"),  # two features import each other
        ("engine/probe.py", "import slipstream.gateway"),  # the engine reaches up
        ("protocol/probe.py", "import slipstream.providers.base"),  # protocol imports ours
    ],
)
def test_the_contract_catches_a_forbidden_import(
    tmp_path: Path, module: str, forbidden: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "slipstream", src / "slipstream")
    (src / "slipstream" / module).write_text(forbidden + "\n")
    out = lint(src)
    assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout
