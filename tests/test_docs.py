"""The README documents every setting, and the commands it tells a newcomer to run exist."""

from __future__ import annotations

from pathlib import Path

from ghl_intake.cli import build_parser
from ghl_intake.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [name for name in Settings.ENV_NAMES.values() if f"`{name}`" not in README]
    assert not missing, f"settings missing from the README table: {missing}"


def test_readme_setup_commands_exist() -> None:
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"bash {script}" in README
        assert (ROOT / script).is_file()
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_cli_command_is_in_the_readme() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"`ghl-intake {name}" in README, name


def test_procfile_has_web_and_every_stage() -> None:
    procs = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert "serve" in procs["web"]
    for stage in ("dedup", "rate", "redact", "persist", "audit"):
        assert procs[stage].strip() == f"arq workers.{stage}.WorkerSettings"
