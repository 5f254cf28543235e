"""The top-level packages import one way only (issue 18): the contract in .importlinter.

core <- synthesis <- voices : tenants <- batches <- workers <- api <- ttsplatform. Imports inside
functions count too, so a cycle cannot hide in one.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_layer_contract_is_kept() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", str(ROOT / ".importlinter"), "--no-cache", "--no-logo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


PACKAGES = ("core", "synthesis", "voices", "tenants", "batches", "workers", "api", "ttsplatform")


def test_the_mode_is_chosen_in_one_place() -> None:
    """Only workers/backend.py asks which mode runs (settings.py defines it)."""
    readers = sorted(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "settings.DISTRIBUTED" in path.read_text(encoding="utf-8")
    )
    assert readers == ["workers/backend.py"]


def test_the_backend_follows_the_setting(settings) -> None:
    from workers import backend

    settings.DISTRIBUTED = False
    assert backend.current().name == "embedded"
    settings.DISTRIBUTED = True
    assert backend.current().name == "distributed"
    assert backend.current().quota_counters() is backend.current().quota_counters()
