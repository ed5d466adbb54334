"""`python -m hubpin.demo [--workdir DIR] [--keep]` (what `./dev demo` runs).

hubpin's main job end to end on this machine, with no internet:

1. make tiny repos (a BERT, the Japanese MeCab tokenizer under its real Hub name, a
   sentence-transformer, a dataset) in a work folder;
2. `hubpin publish` them into a local store (a plain HF cache folder);
3. `hubpin serve` that store on 127.0.0.1 (the real CLI, in a subprocess);
4. load everything through the mirror with unmodified transformers, sentence-transformers and
   datasets, in a fresh interpreter that only has `HF_ENDPOINT` pointed at the mirror, and
   check the results equal those of the source folders;
5. `hubpin init` + `hubpin add` each repo: a project with hubpin.toml and hubpin.lock;
6. publish new weights to `main` upstream: `hubpin outdated` reports it, the lock keeps its pin;
7. `hubpin sync` exactly the locked files into a fresh cache (the production machine);
8. stop the mirror;
9. load offline by name (`HF_HUB_OFFLINE=1`, only `HF_HUB_CACHE` set, no `revision=`): the
   locked commit loads, not the newer `main`;
10. `hubpin verify` the cache; flip one byte of the weights and watch verify fail (exit 1);
11. air gap: `hubpin keygen`, `hubpin export --sign` a bundle, `hubpin sync --from BUNDLE --trust`
    into another empty cache with the mirror down, `hubpin verify` it.

Each step is a small function taking the shared `Demo` state, so steps are easy to add.
Any failure prints one `error: …` line (plus a `hint:` when there is a next step) and exits 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ._core import PARENT_ENV, Demo, DemoError, say
from ._steps import STEPS, Step, stop_server

__all__ = ["STEPS", "main", "run_demo"]


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
    parser = argparse.ArgumentParser(
        prog="python -m hubpin.demo",
        description="hubpin end to end with no internet: make tiny models, publish, serve on 127.0.0.1, "
        "load through the mirror, lock, sync, load offline, verify, carry a signed bundle. Exit 0 when every step worked.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="an empty or new work folder, kept afterwards (default: a temp folder, removed on success)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp work folder after a successful run"
    )
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
    say(f"ok: every step passed in {time.monotonic() - t0:.0f} s")
    if keep:
        say(f"    files kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
