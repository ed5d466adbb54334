"""The CLI entry points: the `hubpin` script and `python -m hubpin` are the same program."""

from __future__ import annotations

import subprocess
import sys

from harness import run_cli


def test_python_dash_m_runs_the_same_cli_as_the_script() -> None:
    script = run_cli("--help")
    module = subprocess.run([sys.executable, "-m", "hubpin", "--help"], capture_output=True, text=True, timeout=60)
    assert script.returncode == module.returncode == 0
    assert "sync" in module.stdout and "Exit codes" in module.stdout
    assert module.stdout.split("Options:", 1)[1] == script.stdout.split("Options:", 1)[1]


def test_unknown_command_is_bad_usage_with_exit_2() -> None:
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr
