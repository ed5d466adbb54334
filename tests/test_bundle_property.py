"""Property (security.md §5 case 14, the model-signing fuzzer pattern): export a signed bundle,
change any one byte, drop / duplicate / swap a member, or edit any manifest field; the import
must fail with a BundleError and leave the target cache exactly as it was."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hubpin._bundle_format import BLOCK, MANIFEST_NAME, member_header
from hubpin.bundle import export_bundle, generate_keypair, import_bundle, select_entries
from hubpin.errors import BundleError
from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.store import LocalStore
from test_bundle import tree_state


class Case:
    def __init__(self, root: Path) -> None:
        src = root / "src"
        (src / "d").mkdir(parents=True)
        (src / "config.json").write_text('{"a": 1}\n')
        (src / "d" / "vocab.txt").write_text("x\ny\n" * 50)
        (src / "w.safetensors").write_bytes(bytes(range(256)) * 7)
        store = LocalStore(root / "store", fsync=False)
        publish(src, RepoKey("model", "org/p"), store)
        key = generate_keypair(root / "key")
        self.pub = key.public
        self.bundle = root / "b.bundle"
        export_bundle(self.bundle, store, select_entries(store, ["org/p"], None), sign_key=key.private)
        self.data = self.bundle.read_bytes()
        with tarfile.open(self.bundle, "r|") as tf:
            self.members = [(m.name, tf.extractfile(m).read()) for m in tf]  # type: ignore[union-attr]
        self.target = root / "target"
        self.target.mkdir()
        (self.target / "keep.txt").write_text("user data")
        self.state = tree_state(self.target)
        self.n = 0
        self.root = root

    def check_refused(self, data: bytes, trust: bool) -> None:
        self.n += 1
        p = self.root / f"m{self.n}.bundle"
        p.write_bytes(data)
        with pytest.raises(BundleError):
            import_bundle(p, self.target, trust=self.pub if trust else None)
        assert tree_state(self.target) == self.state
        p.unlink()


def _pack(members: list[tuple[str, bytes]]) -> bytes:
    out = b"".join(member_header(n, len(d)) + d + bytes(-len(d) % BLOCK) for n, d in members)
    return out + bytes(2 * BLOCK)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    c = Case(tmp_path_factory.mktemp("bundle-prop"))
    import_bundle(c.bundle, c.root / "sanity", trust=c.pub)  # the unmodified bundle imports fine
    assert _pack(c.members) == c.data
    return c


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.data(), st.booleans())
def test_any_one_byte_changed_is_refused(case: Case, data: st.DataObject, trust: bool) -> None:
    pos = data.draw(st.integers(0, len(case.data) - 1), label="offset")
    xor = data.draw(st.integers(1, 255), label="xor")
    mutated = bytearray(case.data)
    mutated[pos] ^= xor
    case.check_refused(bytes(mutated), trust)


@FAST
@given(st.data(), st.sampled_from(["drop", "duplicate", "swap", "truncate", "append"]), st.booleans())
def test_any_member_change_is_refused(case: Case, data: st.DataObject, op: str, trust: bool) -> None:
    members = list(case.members)
    i = data.draw(st.integers(0, len(members) - 1), label="member")
    # without --trust, a bundle whose signature was stripped is simply unsigned (and imports)
    assume(trust or not (op == "drop" and i == len(members) - 1))
    if op == "drop":
        del members[i]
    elif op == "duplicate":
        members.insert(i, members[i])
    elif op == "swap":
        j = data.draw(st.integers(0, len(members) - 1).filter(lambda j: members[j] != members[i]), label="other")
        members[i], members[j] = members[j], members[i]
    elif op == "truncate":
        name, d = members[i]
        members[i] = (name, d[: data.draw(st.integers(0, max(0, len(d) - 1)), label="keep")])
    else:
        members.insert(i + 1, ("blobs/" + "ab" * 32, b"extra"))
    case.check_refused(_pack(members), trust)


def _leaves(obj: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _leaves(v, (*path, k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _leaves(v, (*path, i))]
    return [path]


@FAST
@given(st.data(), st.booleans())
def test_any_manifest_field_edited_is_refused(case: Case, data: st.DataObject, trust: bool) -> None:
    doc = json.loads(case.members[0][1])
    path = data.draw(st.sampled_from(_leaves(doc)), label="field")
    node = doc
    for k in path[:-1]:
        node = node[k]  # type: ignore[index]
    old = node[path[-1]]  # type: ignore[index]
    if isinstance(old, bool):
        new: object = not old
    elif isinstance(old, int):
        new = old + data.draw(st.sampled_from([-1, 1, 4096]))
    else:
        s = str(old)
        new = s[:-1] + ("0" if s[-1:] != "0" else "1") if s else "x"
    node[path[-1]] = new  # type: ignore[index]
    edited = (json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    members = [(MANIFEST_NAME, edited), *case.members[1:]]
    case.check_refused(_pack(members), trust)
