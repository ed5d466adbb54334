"""HubClient against the in-process hubpin mirror and tiny in-test apps for faults it won't produce."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness import unique_repo
from hostile_names import UNSAFE_FILENAMES
from hubpin.errors import HashMismatchError, NotFoundError, RemoteError, UnsafePathError
from hubpin.hashing import git_blob_id
from hubpin.hub import HubClient, RemoteFile
from hubpin.objects import RepoKey
from hubpin.server.app import create_app
from hubpin.server.config import ServerConfig
from hubpin.server.runner import free_port, serve_in_thread

SHA = "a" * 40


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


@pytest.fixture
def client(hub) -> Iterator[HubClient]:  # noqa: ANN001
    with HubClient(hub.url, token=False) as c:
        yield c


def test_resolve_branch_tag_and_sha(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/resolve")
    sha1 = hub.publish(_folder(tmp_path / "a", {"a.txt": b"one"}), rid)
    hub.publish(_folder(tmp_path / "a", {"a.txt": b"one"}), rid, revision="v1")
    sha2 = hub.publish(_folder(tmp_path / "b", {"a.txt": b"two"}), rid)
    repo = RepoKey("model", rid)
    assert sha1 != sha2
    assert client.resolve(repo, "main") == sha2
    assert client.resolve(repo, "v1") == sha1
    assert client.resolve(repo, sha1) == sha1
    refs = client.list_refs(repo)
    assert refs["main"] == sha2 and refs["v1"] == sha1


def test_dataset_repos_use_the_dataset_api(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/ds")
    sha = hub.publish(_folder(tmp_path, {"data/train.csv": b"a,b\n1,2\n"}), rid, dataset=True)
    repo = RepoKey("dataset", rid)
    assert client.resolve(repo, "main") == sha
    [f] = client.list_files(repo, sha)
    assert (f.path, f.size, f.oid, f.lfs_sha256) == ("data/train.csv", 8, git_blob_id(b"a,b\n1,2\n"), None)
    with pytest.raises(NotFoundError):
        client.resolve(RepoKey("model", rid), "main")


def test_list_files_follows_absolute_pagination(hub, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/paged")
    files = {f"d{i % 3}/f{i}.txt": f"file {i}".encode() for i in range(11)}
    files["w.safetensors"] = b"\x01" * 64  # LFS by the Hub's default patterns
    sha = hub.publish(_folder(tmp_path, files), rid)
    app = create_app(hub.store, ServerConfig(page_size=3))
    pages: list[str] = []
    with serve_in_thread(app) as url, HubClient(url, token=False) as c:
        c.http.event_hooks["request"].append(lambda r: pages.append(str(r.url)))
        listed = c.list_files(RepoKey("model", rid), sha)
    assert len(pages) > 4 and all(p.startswith(url) for p in pages)  # several pages, all on the mirror
    assert [f.path for f in listed] == sorted(files)
    by_path = {f.path: f for f in listed}
    assert by_path["d0/f0.txt"] == RemoteFile("d0/f0.txt", 6, git_blob_id(b"file 0"))
    lfs = by_path["w.safetensors"]
    assert lfs.lfs_sha256 == hashlib.sha256(b"\x01" * 64).hexdigest() and lfs.etag == lfs.lfs_sha256


def test_not_found_errors_name_what_is_missing(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/nf")
    sha = hub.publish(_folder(tmp_path, {"a.txt": b"x"}), rid)
    repo = RepoKey("model", rid)
    with pytest.raises(NotFoundError) as e:
        client.resolve(RepoKey("model", "org/does-not-exist"), "main")
    assert e.value.exit_code == 2 and "org/does-not-exist@main" in e.value.message and "RepoNotFound" in e.value.message
    with pytest.raises(NotFoundError) as e:
        client.resolve(repo, "no-such-branch")
    assert f"{rid}@no-such-branch" in e.value.message and "RevisionNotFound" in e.value.message
    with pytest.raises(NotFoundError) as e:
        client.hash_file(repo, sha, RemoteFile("missing.txt", 1, SHA))
    assert "missing.txt" in e.value.message and "EntryNotFound" in e.value.message


def test_unreachable_endpoint_is_a_remote_error_with_a_hint() -> None:
    waits: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with HubClient(url, token=False, max_retries=2, sleep=waits.append) as c, pytest.raises(RemoteError) as e:
        c.resolve(RepoKey("model", "org/x"), "main")
    assert e.value.exit_code == 3 and url in e.value.message and "org/x@main" in e.value.message
    assert "HF_ENDPOINT" in (e.value.hint or "")
    assert waits == [0.5, 1.0]  # bounded exponential backoff, then give up


class _Flaky:
    """A tiny Hub that fails `failures` times with `status` (+ headers), then answers."""

    def __init__(self, status: int, headers: dict[str, str], failures: int = 1) -> None:
        self.status, self.headers, self.failures = status, headers, failures
        self.times: list[float] = []
        self.auth: list[str | None] = []

    def app(self) -> Starlette:
        async def info(request: Request) -> Response:
            self.times.append(time.monotonic())
            self.auth.append(request.headers.get("authorization"))
            if len(self.times) <= self.failures:
                return Response("slow down", status_code=self.status, headers=self.headers)
            return JSONResponse({"id": "org/x", "sha": SHA})

        return Starlette(routes=[Route("/api/models/org/x/revision/main", info)])


def test_429_retry_after_is_honoured() -> None:
    flaky = _Flaky(429, {"Retry-After": "1"})
    with serve_in_thread(flaky.app()) as url, HubClient(url, token=False) as c:
        assert c.resolve(RepoKey("model", "org/x"), "main") == SHA
    assert len(flaky.times) == 2
    assert flaky.times[1] - flaky.times[0] >= 0.95  # waited what the server asked, not the 0.5 s backoff


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"RateLimit": '"api";r=0;t=4'}, [5.0]),  # t+1, as huggingface_hub does
        (429, {"Retry-After": "3600"}, [7.0]),  # capped by max_wait
        (503, {}, [0.5]),
    ],
)
def test_retry_waits(status: int, headers: dict[str, str], expected: list[float]) -> None:
    flaky = _Flaky(status, headers)
    waits: list[float] = []
    with serve_in_thread(flaky.app()) as url, HubClient(url, token=False, sleep=waits.append, max_wait=7) as c:
        assert c.resolve(RepoKey("model", "org/x"), "main") == SHA
    assert waits == expected


def test_persistent_5xx_gives_up_with_remote_error() -> None:
    flaky = _Flaky(502, {}, failures=100)
    with (
        serve_in_thread(flaky.app()) as url,
        HubClient(url, token=False, max_retries=3, sleep=lambda s: None) as c,
        pytest.raises(RemoteError) as e,
    ):
        c.resolve(RepoKey("model", "org/x"), "main")
    assert len(flaky.times) == 4 and "502" in e.value.message and e.value.exit_code == 3


def test_token_goes_to_the_endpoint_only_and_never_into_messages() -> None:
    secret = "hf_secret_token_value_123"
    flaky = _Flaky(401, {}, failures=1)
    with serve_in_thread(flaky.app()) as url, HubClient(url, token=secret) as c:
        with pytest.raises(RemoteError) as e:
            c.resolve(RepoKey("model", "org/x"), "main")
        assert secret not in e.value.message and secret not in (e.value.hint or "") and secret not in repr(c)
        assert c.resolve(RepoKey("model", "org/x"), "main") == SHA
    assert flaky.auth == [f"Bearer {secret}"] * 2

    # a pagination link to another origin is refused: the token would follow it
    other = _Flaky(200, {}, failures=0)

    def tree(request: Request) -> Response:
        return JSONResponse([], headers={"Link": f'<{other_url}/api/models/org/x/tree/{SHA}?cursor=2>; rel="next"'})

    with serve_in_thread(other.app()) as other_url, serve_in_thread(
        Starlette(routes=[Route(f"/api/models/org/x/tree/{SHA}", tree)])
    ) as url, HubClient(url, token=secret) as c, pytest.raises(RemoteError, match="another origin"):
        c.list_files(RepoKey("model", "org/x"), SHA)
    assert other.auth == []


@pytest.mark.parametrize("name", UNSAFE_FILENAMES)
def test_hostile_names_in_a_listing_are_refused(name: str) -> None:
    def tree(request: Request) -> Response:
        return JSONResponse([{"type": "file", "path": name, "size": 1, "oid": SHA}])

    with (
        serve_in_thread(Starlette(routes=[Route(f"/api/models/org/x/tree/{SHA}", tree)])) as url,
        HubClient(url, token=False) as c,
        pytest.raises(UnsafePathError, match="the endpoint listed"),
    ):
        c.list_files(RepoKey("model", "org/x"), SHA)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([{"type": "file", "path": "a", "size": -1, "oid": SHA}], RemoteError),
        ([{"type": "file", "path": "a", "size": 1, "oid": "xyz"}], RemoteError),
        ([{"type": "file", "path": "a", "size": 1, "oid": SHA, "lfs": {"oid": "nope"}}], RemoteError),
        ([{"type": "file", "path": "a", "size": 1, "oid": SHA}] * 2, RemoteError),
        ({"not": "a list"}, RemoteError),
    ],
)
def test_hostile_or_malformed_tree_is_refused(body: object, error: type[Exception]) -> None:
    def tree(request: Request) -> Response:
        return JSONResponse(body)

    with (
        serve_in_thread(Starlette(routes=[Route(f"/api/models/org/x/tree/{SHA}", tree)])) as url,
        HubClient(url, token=False) as c,
        pytest.raises(error),
    ):
        c.list_files(RepoKey("model", "org/x"), SHA)


def test_html_with_200_is_a_remote_error() -> None:
    def portal(request: Request) -> Response:
        return Response("<html>captive portal</html>", media_type="text/html")

    with (
        serve_in_thread(Starlette(routes=[Route("/{p:path}", portal)])) as url,
        HubClient(url, token=False) as c,
        pytest.raises(RemoteError, match="non-JSON"),
    ):
        c.resolve(RepoKey("model", "org/x"), "main")


def test_hash_file_checks_size_and_git_blob_id(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/hash")
    sha = hub.publish(_folder(tmp_path, {"a.txt": b"hello"}), rid)
    repo = RepoKey("model", rid)
    [f] = client.list_files(repo, sha)
    assert client.hash_file(repo, sha, f).sha256 == hashlib.sha256(b"hello").hexdigest()
    assert client.file_url(repo, sha, "a b/c.txt") == f"{hub.url}/{rid}/resolve/{sha}/a%20b/c.txt"
    with pytest.raises(HashMismatchError, match="git blob id"):
        client.hash_file(repo, sha, RemoteFile("a.txt", 5, git_blob_id(b"HELLO")))
    with pytest.raises(HashMismatchError, match="size"):
        client.hash_file(repo, sha, RemoteFile("a.txt", 4, f.oid))


def test_redirect_to_another_host_drops_the_token() -> None:
    secret = "hf_secret_for_redirect"
    cdn_auth: list[str | None] = []

    async def cdn(request: Request) -> Response:
        cdn_auth.append(request.headers.get("authorization"))
        return Response(b"hello", headers={"X-Repo-Commit": SHA})

    with serve_in_thread(Starlette(routes=[Route("/blob", cdn)])) as cdn_url:

        async def resolve(request: Request) -> Response:
            return Response(status_code=302, headers={"Location": f"{cdn_url}/blob", "X-Repo-Commit": SHA})

        app = Starlette(routes=[Route(f"/org/x/resolve/{SHA}/a.txt", resolve)])
        with serve_in_thread(app) as url, HubClient(url, token=secret) as c:
            d = c.hash_file(RepoKey("model", "org/x"), SHA, RemoteFile("a.txt", 5, git_blob_id(b"hello")))
    assert d.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert cdn_auth == [None]


class _Truncating:
    """Raw ASGI app: promises 5 bytes, sends 2 and stops, `failures` times; then sends all 5."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        headers = [(b"content-length", b"5"), (b"x-repo-commit", SHA.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        if self.calls <= self.failures:
            await send({"type": "http.response.body", "body": b"he", "more_body": False})  # type: ignore[operator]
            return
        await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]


def test_a_body_cut_short_is_retried_then_reported() -> None:
    f = RemoteFile("a.txt", 5, git_blob_id(b"hello"))
    once = _Truncating(failures=1)
    with serve_in_thread(once) as url, HubClient(url, token=False, sleep=lambda s: None) as c:
        assert c.hash_file(RepoKey("model", "org/x"), SHA, f).sha256 == hashlib.sha256(b"hello").hexdigest()
    assert once.calls == 2
    always = _Truncating(failures=100)
    with (
        serve_in_thread(always) as url,
        HubClient(url, token=False, sleep=lambda s: None, max_retries=2) as c,
        pytest.raises(RemoteError, match="a.txt: download from .* broke off"),
    ):
        c.hash_file(RepoKey("model", "org/x"), SHA, f)
    assert always.calls == 3
