"""State and helpers shared by the demo's steps: subprocesses, the client environment, output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: the repos the demo publishes besides the Japanese tokenizer (which keeps its real Hub name)
BERT_REPO = "hubpin-demo/tiny-bert"
ST_REPO = "hubpin-demo/tiny-sentence-transformer"
DATASET_REPO = "hubpin-demo/tiny-dataset"


#: set in the demo's own process, which only builds fixtures and must never reach a network
PARENT_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


class DemoError(Exception):
    """A demo step failed; `hint` says what to try next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass
class Demo:
    """State shared by the steps."""

    workdir: Path
    sources: dict[str, Path] = field(default_factory=dict)  # repo id -> fixture folder
    datasets: set[str] = field(default_factory=set)  # repo ids that are dataset repos
    commits: dict[str, str] = field(default_factory=dict)  # repo id -> published commit
    server: subprocess.Popen[bytes] | None = None
    url: str | None = None
    bert_sha256: str | None = None  # checksum of the tiny BERT's output as loaded through the mirror

    @property
    def project(self) -> Path:
        """The application's project folder: hubpin.toml and hubpin.lock."""
        return self.workdir / "app"

    @property
    def deploy_cache(self) -> Path:
        """The production machine's HF cache, filled only by `hubpin sync`."""
        return self.workdir / "deploy-cache"

    @property
    def store(self) -> Path:
        return self.workdir / "store"

    @property
    def server_log(self) -> Path:
        return self.workdir / "serve.log"


def say(text: str = "") -> None:
    print(text, flush=True)


# --- helpers ----------------------------------------------------------------------------------


def hubpin_cmd() -> list[str]:
    """The real `hubpin` console script next to this interpreter (else the same entry point)."""
    exe = shutil.which("hubpin", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from hubpin.cli import main; main()"]


def client_env(demo: Demo, **extra: str) -> dict[str, str]:
    """Environment for a client process: its own HF folders, no token, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_"))}
    env.pop("HUBPIN_STORE", None)
    home = demo.workdir / "client-hf-home"
    env.update(
        {
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "TOKENIZERS_PARALLELISM": "false",
            "DISABLE_SAFETENSORS_CONVERSION": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(extra)
    return env


def last_error_line(text: str) -> str:
    """The most useful line of a failed process's stderr: its `error:` line, else the last one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln[len("error:") :].strip()
    return lines[-1] if lines else "(no output)"


def run_proc(
    cmd: list[str],
    what: str,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` (called `what` in messages) to completion, capturing its output."""
    try:
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise DemoError(f"{what} did not finish within {timeout:.0f} s") from e


def run(
    cmd: list[str],
    what: str,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> str:
    """Run `cmd`; return stdout; raise DemoError with its most telling stderr line otherwise."""
    proc = run_proc(cmd, what, env=env, cwd=cwd, timeout=timeout)
    if proc.returncode != 0:
        raise DemoError(f"{what} exited {proc.returncode}: {last_error_line(proc.stderr)}")
    return proc.stdout


def run_app(script: str, args: dict[str, str], *, env: dict[str, str], cwd: Path | None = None) -> dict:
    """Run one of the `_apps` scripts in a fresh interpreter; return its JSON result."""
    try:
        out = run([sys.executable, "-c", script, json.dumps(args)], "the application", env=env, cwd=cwd)
    except DemoError as e:
        if "fugashi" in e.message or "ipadic" in e.message or "MeCab" in e.message:
            e.hint = (
                "the Japanese tokenizer needs MeCab: pip install fugashi ipadic (`hubpin doctor` checks this)"
            )
        raise
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise DemoError(f"the application printed no result: {out.strip()[-200:]!r}") from e
    if not isinstance(result, dict):
        raise DemoError(f"the application printed {result!r}, not a JSON object")
    return result


def hubpin(demo: Demo, *args: str, cwd: Path | None = None) -> str:
    """Run the real `hubpin` CLI; return its stdout."""
    return run([*hubpin_cmd(), *args], f"hubpin {args[0]}", env=client_env(demo), cwd=cwd)


def show(output: str, prefix: str = "      ") -> None:
    for line in output.strip().splitlines():
        say(prefix + line)


def human_size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def short(sha: str) -> str:
    return sha[:12]
