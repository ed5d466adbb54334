"""`python -m hubpin.demo [--workdir DIR] [--keep]` (what `./dev demo` runs).

hubpin's main job end to end on this machine, with no internet:

1. make tiny repos (a BERT, the Japanese MeCab tokenizer under its real Hub name, a
   sentence-transformer, a dataset) in a work folder;
2. `hubpin publish` them into a local store (a plain HF cache folder);
3. `hubpin serve` that store on 127.0.0.1 (the real CLI, in a subprocess);
4. load everything through the mirror with unmodified transformers, sentence-transformers and
   datasets, in a fresh interpreter that only has `HF_ENDPOINT` pointed at the mirror, and
   check the results equal those of the source folders;
5. stop the server.

Each step is a small function taking the shared `Demo` state, so steps are easy to add.
Any failure prints one `error: …` line (plus a `hint:` when there is a next step) and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .fixtures import (
    JAPANESE_REPO_ID,
    JAPANESE_SENTENCE,
    SAMPLE_TEXT,
    make_japanese_tokenizer,
    make_sentence_transformer,
    make_tiny_bert,
    make_tiny_dataset,
)

#: the repos the demo publishes: (repo id, is dataset, fixture folder name)
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


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run `cmd`; return stdout; raise DemoError with the failing line otherwise."""
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise DemoError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s") from e
    if proc.returncode != 0:
        raise DemoError(
            f"{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:3]))} "
            f"exited {proc.returncode}: {last_error_line(proc.stderr)}"
        )
    return proc.stdout


def human_size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def short(sha: str) -> str:
    return sha[:12]


# --- steps ------------------------------------------------------------------------------------


def step_make_fixtures(demo: Demo) -> None:
    src = demo.workdir / "src"
    made = {
        BERT_REPO: make_tiny_bert(src / "tiny-bert"),
        JAPANESE_REPO_ID: make_japanese_tokenizer(src / "japanese-tokenizer"),
        ST_REPO: make_sentence_transformer(src / "tiny-sentence-transformer"),
        DATASET_REPO: make_tiny_dataset(src / "tiny-dataset"),
    }
    demo.sources.update(made)
    demo.datasets.add(DATASET_REPO)
    for repo, folder in made.items():
        files = [p for p in folder.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        say(f"      {folder.relative_to(demo.workdir)}/  {len(files)} files, {human_size(size)}  -> {repo}")


def step_publish(demo: Demo) -> None:
    for repo, folder in demo.sources.items():
        cmd = [*hubpin_cmd(), "publish", str(folder), repo, "--store", str(demo.store), "--json"]
        if repo in demo.datasets:
            cmd.insert(-3, "--dataset")
        out = run(cmd, env=client_env(demo))
        try:
            sha = json.loads(out)["commit"]
        except (ValueError, KeyError, TypeError) as e:
            raise DemoError(f"hubpin publish {repo}: unexpected output {out.strip()[:200]!r}") from e
        demo.commits[repo] = sha
        kind = "dataset" if repo in demo.datasets else "model  "
        say(f"      {kind} {repo}@main = {sha}")
    say(f"      store: {demo.store} (a plain HF cache folder)")


def _port_free() -> int:
    from ..server.runner import free_port

    return free_port()


def _wait_until_serving(demo: Demo, url: str, timeout: float = 30) -> None:
    import httpx

    assert demo.server is not None
    deadline = time.monotonic() + timeout
    while True:
        if demo.server.poll() is not None:
            log = demo.server_log.read_text("utf-8", "replace") if demo.server_log.exists() else ""
            raise DemoError(
                f"hubpin serve exited {demo.server.returncode}: {last_error_line(log)}",
                hint=f"see {demo.server_log}",
            )
        try:
            # any HTTP answer means the server is up; /healthz is the documented probe
            httpx.get(f"{url}/healthz", timeout=1.0)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise DemoError(
                f"hubpin serve did not answer on {url} within {timeout:.0f} s", hint=f"see {demo.server_log}"
            )
        time.sleep(0.1)


def step_serve(demo: Demo) -> None:
    port = _port_free()
    url = f"http://127.0.0.1:{port}"
    cmd = [*hubpin_cmd(), "serve", "--store", str(demo.store), "--host", "127.0.0.1", "--port", str(port)]
    log = demo.server_log.open("wb")
    try:
        demo.server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=client_env(demo))
    finally:
        log.close()
    _wait_until_serving(demo, url)
    demo.url = url
    say(f"      $ hubpin serve --store {demo.store.name} --port {port}   (pid {demo.server.pid})")
    say(f"      mirror: {url}")


#: the application: plain transformers / sentence-transformers / datasets calls, nothing from
#: hubpin. Only HF_ENDPOINT (set in its environment) points it at the mirror. It loads each repo
#: from the mirror and from its source folder and reports whether the results are identical.
LOAD_SCRIPT = r"""
import hashlib, json, sys
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

args = json.loads(sys.argv[1])
out = {}

tok = AutoTokenizer.from_pretrained(args["ja_repo"], revision=args["ja_rev"])
local_tok = AutoTokenizer.from_pretrained(args["ja_src"])
out["ja_class"] = type(tok).__name__
out["ja_tokens"] = tok.tokenize(args["sentence"])
out["ja_same"] = out["ja_tokens"] == local_tok.tokenize(args["sentence"])

config = AutoConfig.from_pretrained(args["bert_repo"])
tok = AutoTokenizer.from_pretrained(args["bert_repo"])
model = AutoModel.from_pretrained(args["bert_repo"]).eval()
local = AutoModel.from_pretrained(args["bert_src"]).eval()
inputs = tok(args["text"], return_tensors="pt")
with torch.no_grad():
    h = model(**inputs).last_hidden_state
    h_local = local(**inputs).last_hidden_state
out["bert_config"] = f"{config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}"
out["bert_shape"] = list(h.shape)
out["bert_sha256"] = hashlib.sha256(h.numpy().tobytes()).hexdigest()
out["bert_same"] = bool(torch.equal(h, h_local))

from sentence_transformers import SentenceTransformer
st = SentenceTransformer(args["st_repo"], device="cpu")
st_local = SentenceTransformer(args["st_src"], device="cpu")
sentences = [args["text"], "hello world"]
e, e_local = st.encode(sentences), st_local.encode(sentences)
out["st_shape"] = list(e.shape)
out["st_same"] = bool((e == e_local).all())

import datasets
ds = datasets.load_dataset(args["ds_repo"])
out["ds_splits"] = {k: v.num_rows for k, v in ds.items()}
out["ds_same"] = ds["train"].to_list() == datasets.load_dataset(args["ds_src"])["train"].to_list()

print(json.dumps(out, ensure_ascii=False))
"""


def step_load_through_mirror(demo: Demo) -> None:
    assert demo.url is not None
    args = {
        "ja_repo": JAPANESE_REPO_ID,
        "ja_rev": demo.commits[JAPANESE_REPO_ID],
        "ja_src": str(demo.sources[JAPANESE_REPO_ID]),
        "bert_repo": BERT_REPO,
        "bert_src": str(demo.sources[BERT_REPO]),
        "st_repo": ST_REPO,
        "st_src": str(demo.sources[ST_REPO]),
        "ds_repo": DATASET_REPO,
        "ds_src": str(demo.sources[DATASET_REPO]),
        "sentence": JAPANESE_SENTENCE,
        "text": SAMPLE_TEXT,
    }
    say(f"      HF_ENDPOINT={demo.url}, a fresh HF cache, no hubpin import:")
    out = run(
        [sys.executable, "-c", LOAD_SCRIPT, json.dumps(args)], env=client_env(demo, HF_ENDPOINT=demo.url)
    )
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise DemoError(f"the loader printed no result: {out.strip()[-200:]!r}") from e
    rev = short(demo.commits[JAPANESE_REPO_ID])
    say(f"      AutoTokenizer.from_pretrained({JAPANESE_REPO_ID!r}, revision='{rev}…') -> {r['ja_class']}")
    say(f"        {JAPANESE_SENTENCE} -> {' | '.join(r['ja_tokens'])}")
    say(f"      AutoModel.from_pretrained({BERT_REPO!r}) -> {r['bert_config']}")
    say(f"        last_hidden_state {tuple(r['bert_shape'])}, sha256 {r['bert_sha256'][:16]}…")
    say(f"      SentenceTransformer({ST_REPO!r}).encode(2 sentences) -> {tuple(r['st_shape'])}")
    say(f"      load_dataset({DATASET_REPO!r}) -> {r['ds_splits']}")
    checks = {
        "Japanese tokens": r["ja_same"],
        "BERT outputs": r["bert_same"],
        "embeddings": r["st_same"],
        "dataset rows": r["ds_same"],
    }
    bad = [name for name, same in checks.items() if not same]
    if bad:
        raise DemoError(f"loaded through the mirror but differs from the source folder: {', '.join(bad)}")
    say("      all identical to the source folders: " + ", ".join(checks))
    cache = demo.workdir / "client-hf-home" / "hub"
    snap = cache / f"models--{BERT_REPO.replace('/', '--')}" / "snapshots" / demo.commits[BERT_REPO]
    if not snap.is_dir():
        raise DemoError(f"the client cache has no snapshot {snap}: the model did not come from the mirror")
    say(f"      client cache: {cache} (snapshots named by the published commits)")


def stop_server(demo: Demo) -> None:
    proc, demo.server = demo.server, None
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # uvicorn/granian shut down cleanly on SIGINT
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def step_stop(demo: Demo) -> None:
    pid = demo.server.pid if demo.server else None
    stop_server(demo)
    say(f"      stopped hubpin serve (pid {pid})")


Step = tuple[str, Callable[[Demo], None]]

STEPS: list[Step] = [
    ("make tiny repos (transformers save_pretrained, no network)", step_make_fixtures),
    ("hubpin publish: each folder becomes a commit in a local store", step_publish),
    ("hubpin serve: a Hub-compatible mirror on 127.0.0.1", step_serve),
    ("load through the mirror with unmodified clients", step_load_through_mirror),
    ("stop the mirror", step_stop),
]


def run_demo(workdir: Path, steps: list[Step] | None = None) -> Demo:
    """Run `steps` (default: STEPS) in order in `workdir`; raise DemoError naming the failed step."""
    steps = STEPS if steps is None else steps
    demo = Demo(workdir=workdir)
    try:
        for i, (title, fn) in enumerate(steps, 1):
            say(f"[{i}/{len(steps)}] {title}")
            t0 = time.monotonic()
            try:
                fn(demo)
            except DemoError as e:
                raise DemoError(f"step {i} ({title.split(':')[0]}): {e.message}", e.hint) from e
            except Exception as e:  # noqa: BLE001 - any failure of a step ends the demo with one line
                raise DemoError(f"step {i} ({title.split(':')[0]}): {type(e).__name__}: {e}") from e
            say(f"      ({time.monotonic() - t0:.1f} s)")
    finally:
        stop_server(demo)
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubpin.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    opts = parser.parse_args(argv)
    if opts.workdir is not None:
        workdir = opts.workdir.absolute()
        if workdir.exists() and any(workdir.iterdir()):
            print(
                f"error: --workdir {workdir} is not empty; the demo needs an empty or new folder",
                file=sys.stderr,
            )
            print("hint: pass a new path, or omit --workdir to use a temp folder", file=sys.stderr)
            return 2
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="hubpin-demo-"))
    keep = opts.keep or opts.workdir is not None
    # this process only builds fixtures and must never reach a network: keep huggingface_hub
    # offline and quiet here (set before the fixture makers import it); clients get their own env
    os.environ.update(PARENT_ENV)
    say(f"hubpin demo in {workdir}")
    t0 = time.monotonic()
    try:
        run_demo(workdir)
    except DemoError as e:
        # keep the work folder on failure: serve.log and the fixtures explain what went wrong
        print(f"error: {e.message}", file=sys.stderr, flush=True)
        print(
            f"hint: {e.hint or f'the work folder {workdir} is kept for inspection'}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; the work folder {workdir} is kept", file=sys.stderr)
        return 130
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"ok: published, served and loaded through hubpin in {time.monotonic() - t0:.0f} s")
    if keep:
        say(f"    files kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
