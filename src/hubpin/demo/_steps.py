"""The demo's steps, in order (`STEPS`). Each takes the shared `Demo` state and prints what it did."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..lockfile import read_lock
from ._apps import MIRROR_APP, OFFLINE_APP
from ._core import (
    BERT_REPO,
    DATASET_REPO,
    ST_REPO,
    Demo,
    DemoError,
    client_env,
    hubpin,
    hubpin_cmd,
    human_size,
    last_error_line,
    run,
    run_app,
    run_proc,
    say,
    short,
    show,
)
from .fixtures import (
    JAPANESE_REPO_ID,
    JAPANESE_SENTENCE,
    JAPANESE_TOKENS,
    SAMPLE_TEXT,
    make_japanese_tokenizer,
    make_sentence_transformer,
    make_tiny_bert,
    make_tiny_dataset,
)

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


def publish(demo: Demo, folder: Path, repo: str) -> str:
    """`hubpin publish FOLDER REPO --store STORE`; return the commit id."""
    args = ["publish", str(folder), repo, "--store", str(demo.store), "--json"]
    if repo in demo.datasets:
        args.append("--dataset")
    out = hubpin(demo, *args)
    try:
        return str(json.loads(out)["commit"])
    except (ValueError, KeyError, TypeError) as e:
        raise DemoError(f"hubpin publish {repo}: unexpected output {out.strip()[:200]!r}") from e


def step_publish(demo: Demo) -> None:
    for repo, folder in demo.sources.items():
        demo.commits[repo] = sha = publish(demo, folder, repo)
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
            httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False)  # never via a proxy
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
    r = run_app(MIRROR_APP, args, env=client_env(demo, HF_ENDPOINT=demo.url))
    demo.bert_sha256 = r["bert_sha256"]
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


def step_lock(demo: Demo) -> None:
    assert demo.url is not None
    demo.project.mkdir()
    hubpin(demo, "init", "--dir", str(demo.project), "--endpoint", demo.url)
    say(f"      $ cd {demo.project.name} && hubpin init --endpoint {demo.url}")
    for repo in demo.sources:
        kind = ["--dataset"] if repo in demo.datasets else []
        say(f"      $ hubpin add {repo} {' '.join(kind)}".rstrip())
        show(hubpin(demo, "add", repo, *kind, cwd=demo.project), "        ")
    lock = read_lock(demo.project / "hubpin.lock")
    for repo, sha in demo.commits.items():
        entry = lock.find(repo, "dataset" if repo in demo.datasets else "model")
        if entry is None or entry.commit != sha:
            got = entry.commit if entry else "nothing"
            raise DemoError(f"hubpin.lock pins {repo} at {got}, expected the published commit {sha}")
    files = sum(len(r.files) for r in lock.repos)
    say(f"      hubpin.lock: {len(lock.repos)} repos, {files} files, each with size + sha256; for example")
    ja = lock.find(JAPANESE_REPO_ID, "model")
    assert ja is not None
    say(f"        {ja.repo.id}  {ja.revision} -> {ja.commit}")
    for f in ja.files:
        say(f"          {f.path:<24} {human_size(f.size):>7}  sha256 {f.sha256[:16]}…")
    say("      $ hubpin lock --check")
    show(hubpin(demo, "lock", "--check", cwd=demo.project), "        ")


def step_upstream_moves(demo: Demo) -> None:
    v2 = make_tiny_bert(demo.workdir / "src" / "tiny-bert-v2", seed=1)
    sha = publish(demo, v2, BERT_REPO)
    say(f"      someone publishes new weights: {BERT_REPO}@main = {sha}")
    say("      $ hubpin outdated")
    show(hubpin(demo, "outdated", cwd=demo.project), "        ")
    say(f"      the lock still pins {short(demo.commits[BERT_REPO])}…; `hubpin lock --upgrade` would move it")


def step_sync(demo: Demo) -> None:
    say(f"      $ hubpin sync --cache-dir {demo.deploy_cache.name}")
    show(hubpin(demo, "sync", "--cache-dir", str(demo.deploy_cache), cwd=demo.project), "        ")


def offline_env(demo: Demo) -> dict[str, str]:
    """Production at run time: HF_HUB_OFFLINE=1 and HF_HUB_CACHE; no endpoint, no HF_HOME."""
    env = {k: v for k, v in client_env(demo).items() if not k.startswith("HF_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(demo.deploy_cache)})
    return env


def step_offline_load(demo: Demo) -> None:
    args = {
        "ja_repo": JAPANESE_REPO_ID,
        "bert_repo": BERT_REPO,
        "bert_src": str(demo.sources[BERT_REPO]),
        "st_repo": ST_REPO,
        "st_src": str(demo.sources[ST_REPO]),
        "ds_repo": DATASET_REPO,
        "ds_cache": str(demo.workdir / "deploy-datasets-cache"),
        "sentence": JAPANESE_SENTENCE,
        "text": SAMPLE_TEXT,
    }
    say(f"      HF_HUB_OFFLINE=1 HF_HUB_CACHE={demo.deploy_cache.name}, the mirror is down, no revision=:")
    r = run_app(OFFLINE_APP, args, env=offline_env(demo), cwd=demo.project)
    say(f"      AutoTokenizer.from_pretrained({JAPANESE_REPO_ID!r})")
    say(f"        {JAPANESE_SENTENCE} -> {' | '.join(r['ja_tokens'])}")
    say(f"      AutoModel.from_pretrained({BERT_REPO!r}): output sha256 {r['bert_sha256'][:16]}…")
    say(
        f"      SentenceTransformer({ST_REPO!r}) and load_dataset(hubpin.snapshot({DATASET_REPO!r})):"
        f" {r['ds_rows']} rows"
    )
    problems = []
    if r["ja_tokens"] != JAPANESE_TOKENS:
        problems.append(f"Japanese tokens {r['ja_tokens']}, expected {JAPANESE_TOKENS}")
    if not r["bert_same"] or r["bert_sha256"] != demo.bert_sha256:
        problems.append("the BERT outputs are not those of the locked commit (did main's new weights load?)")
    if not r["st_same"]:
        problems.append("the embeddings differ from the source folder")
    if problems:
        raise DemoError("; ".join(problems))
    say(f"      the locked commit loaded ({short(demo.commits[BERT_REPO])}…), not the newer main")


def step_verify(demo: Demo) -> None:
    say(f"      $ hubpin verify --cache-dir {demo.deploy_cache.name}")
    verify = [*hubpin_cmd(), "verify", "--cache-dir", str(demo.deploy_cache)]
    show(run(verify, "hubpin verify", env=client_env(demo), cwd=demo.project), "        ")
    # the official client checks sizes only; flip one byte of the weights and verify again
    snap = (
        demo.deploy_cache / f"models--{BERT_REPO.replace('/', '--')}" / "snapshots" / demo.commits[BERT_REPO]
    )
    blob = (snap / "model.safetensors").resolve()
    original = blob.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    mode = blob.stat().st_mode
    blob.chmod(mode | 0o200)
    blob.write_bytes(bytes(tampered))
    try:
        proc = run_proc(verify, "hubpin verify", env=client_env(demo), cwd=demo.project)
    finally:
        blob.write_bytes(original)
        blob.chmod(mode)
    say("      flip one byte in the cached model.safetensors (same size), then verify again:")
    show(proc.stderr + proc.stdout, "        ")
    if proc.returncode != 1:
        raise DemoError(f"hubpin verify exited {proc.returncode} on a tampered blob, expected 1")
    say(f"        (exit {proc.returncode}; the byte is restored)")


def step_air_gap(demo: Demo) -> None:
    key = demo.workdir / "signing.key"
    bundle = demo.workdir / "models.bundle"
    target = demo.workdir / "airgap-cache"
    hubpin(demo, "keygen", str(key))
    say(f"      $ hubpin keygen {key.name}")
    say(f"      $ hubpin export {bundle.name} --cache-dir {demo.deploy_cache.name} --sign {key.name}")
    show(
        hubpin(
            demo,
            "export",
            str(bundle),
            "--cache-dir",
            str(demo.deploy_cache),
            "--sign",
            str(key),
            cwd=demo.project,
        ),
        "        ",
    )
    say(
        f"      one file, {human_size(bundle.stat().st_size)}; on the other side of the gap (the mirror is down):"
    )
    say(f"      $ hubpin sync --from {bundle.name} --trust {key.name}.pub --cache-dir {target.name}")
    show(
        hubpin(
            demo,
            "sync",
            "--from",
            str(bundle),
            "--trust",
            f"{key}.pub",
            "--cache-dir",
            str(target),
            cwd=demo.project,
        ),
        "        ",
    )
    say(f"      $ hubpin verify --cache-dir {target.name}")
    show(hubpin(demo, "verify", "--cache-dir", str(target), cwd=demo.project), "        ")


Step = tuple[str, Callable[[Demo], None]]

STEPS: list[Step] = [
    ("make tiny repos (transformers save_pretrained, no network)", step_make_fixtures),
    ("hubpin publish: each folder becomes a commit in a local store", step_publish),
    ("hubpin serve: a Hub-compatible mirror on 127.0.0.1", step_serve),
    ("load through the mirror with unmodified clients", step_load_through_mirror),
    ("hubpin init + add: pin every repo in hubpin.lock", step_lock),
    ("upstream moves main; the lock does not", step_upstream_moves),
    ("hubpin sync: exactly the locked files into a fresh cache, verified", step_sync),
    ("stop the mirror", step_stop),
    ("load offline by name, as production does", step_offline_load),
    ("hubpin verify: every cached file by sha256", step_verify),
    ("air gap: a signed bundle carries the locked repos into another cache", step_air_gap),
]
