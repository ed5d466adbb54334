"""Pickle by content (security.md §5 case 17): every wrapper refused by default; allow-pickle scans.

The malicious files are crafted with `pickle.dumps` only: serializing a `__reduce__` that names
`os.system` records the reference, it never calls it. Nothing here is ever unpickled.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest

from hubpin import _pickle
from hubpin.errors import PolicyError
from hubpin.policy import Policy, enforce_files
from hubpin.scan import scan_files


class Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo PWNED",))


class _Import:
    def __reduce__(self):  # noqa: ANN204
        return (importlib.import_module, ("os",))


class Sneaky:
    """The huntr picklescan-bypass shape: import_module + getattr_static, no os.system global."""

    def __reduce__(self):  # noqa: ANN204
        return (inspect.getattr_static, (_Import(), "system"))


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _torch_zip(payload: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(payload, 2))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


EVIL_P4 = pickle.dumps(Evil(), 4)

#: name → (bytes, expected format prefix); every wrapper of item 2 / case 17
WRAPPERS: dict[str, tuple[bytes, str]] = {
    "pytorch_model.bin": (EVIL_P4, "pickle protocol 4"),
    "proto2.pkl": (pickle.dumps(Evil(), 2), "pickle protocol 2"),
    "legacy0.data": (pickle.dumps(Evil(), 0), "pickle protocol 0/1"),
    "legacy1.data": (pickle.dumps(Evil(), 1), "pickle protocol 0/1"),
    "model.safetensors": (pickle.dumps(Evil(), 4), "pickle protocol 4"),
    "notes.txt": (pickle.dumps(Evil(), 3), "pickle protocol 3"),
    "broken_tail.bin": (EVIL_P4[:-1] + b"\xff junk", "pickle protocol 4"),
    "broken_legacy.txt": (pickle.dumps(Evil(), 0)[:-1] + b"\xff junk", "pickle protocol 0/1"),
    "torch.pt": (_torch_zip(Evil()), "torch zip archive"),
    "weights.7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24, "7z archive"),
}


@pytest.fixture
def evil_dir(tmp_path: Path) -> Path:
    d = tmp_path / "evil"
    d.mkdir()
    for name, (data, _fmt) in WRAPPERS.items():
        (d / name).write_bytes(data)
    _zip(d / "bundle.zip", {"inner/model.weights": EVIL_P4, "readme.txt": b"hello"})
    _tar(d / "bundle.tar", {"x/model.bin": EVIL_P4})
    _tar(d / "bundle.tar.gz", {"y/data.dat": EVIL_P4}, "w:gz")
    return d


def _files(d: Path) -> list[tuple[str, Path]]:
    return sorted((p.name, p) for p in d.iterdir())


def test_every_wrapper_is_detected_by_content(evil_dir: Path) -> None:
    for name, (_data, fmt) in WRAPPERS.items():
        sniffed = _pickle.sniff(evil_dir / name)
        assert sniffed is not None, name
        assert sniffed.format.startswith(fmt), (name, sniffed)
    assert _pickle.sniff(evil_dir / "bundle.zip").format == "zip containing pickle"
    assert _pickle.sniff(evil_dir / "bundle.zip").members == ("inner/model.weights",)
    assert _pickle.sniff(evil_dir / "bundle.tar").format == "tar containing pickle"
    assert _pickle.sniff(evil_dir / "bundle.tar.gz").members == ("y/data.dat",)


def test_default_policy_refuses_every_wrapper(evil_dir: Path) -> None:
    report = scan_files(_files(evil_dir), Policy(), target="org/evil")
    refused = {f.path for f in report.violations if f.kind == "pickle"}
    assert refused == set(WRAPPERS) | {"bundle.zip", "bundle.tar", "bundle.tar.gz"}
    with pytest.raises(PolicyError) as e:
        enforce_files("org/evil", [("torch.pt", evil_dir / "torch.pt")], Policy())
    assert str(e.value) == "pickle not allowed: org/evil/torch.pt (torch zip archive)"
    assert e.value.exit_code == 1
    assert "allow-pickle" in (e.value.hint or "")


def test_allow_pickle_still_refuses_every_malicious_wrapper(evil_dir: Path) -> None:
    report = scan_files(_files(evil_dir), Policy(allow_pickle=True), target="org/evil")
    refused = {f.path for f in report.violations}
    assert refused == set(WRAPPERS) | {"bundle.zip", "bundle.tar", "bundle.tar.gz"}
    by_path = {f.path: f.reason for f in report.violations}
    assert "posix.system" in by_path["torch.pt"]
    assert "cannot be checked" in by_path["weights.7z"]
    assert "opcode stream broken" in by_path["broken_tail.bin"]


def test_text_json_and_vocab_are_not_pickles(tmp_path: Path) -> None:
    samples = {
        "config.json": b'{"model_type": "bert"}',
        "vocab.txt": "[PAD]\n[UNK]\n東京\n".encode(),
        "README.md": b"# I love pickles\n",
        "merges.txt": b"I N\n(S a\n",
        "empty.txt": b"",
        # text that walks as opcodes (found by sniffing 90k files of site-packages and /usr/share)
        "RECORD": b"cryptography-50.0.2.dist-info/INSTALLER,sha256=abc,4\nfoo.py,,\n",
        "rule.al": b"VARIABLES X,Y\nCONSTANTS A,B,R\nEQN[1] = A*X^3+B*Y^2-R\nEQN[2] = A*SIN(X)^2 + B*COS(2*Y) - R^2\n"
        b"INPUT A=2.0, B=3.0, R=1.0\nINPUT X = 30 DEG, Y = 3.14\nCODE NONLINEAR(EQN,X,Y) some_filename.c\n",
        "note.txt": b"N.B. read me\n",
    }
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
        assert _pickle.sniff(tmp_path / name) is None, name


def test_benign_torch_state_dict_needs_allow_pickle_and_passes_the_scan(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "pytorch_model.bin"
    torch.save(collections.OrderedDict(w=torch.zeros(2, 3), b=torch.ones(3, dtype=torch.float16)), path)
    files = [("pytorch_model.bin", path)]
    with pytest.raises(PolicyError, match=r"pickle not allowed: org/ok/pytorch_model.bin \(torch zip archive\)"):
        enforce_files("org/ok", files, Policy())
    report = enforce_files("org/ok", files, Policy(allow_pickle=True))
    assert report.ok
    assert [f.kind for f in report.findings] == ["pickle"]
    assert "passed picklescan --strict" in report.findings[0].reason


def test_own_opcode_check_refuses_bypass_shapes_without_picklescan() -> None:
    # picklescan in default mode misses the import_module + getattr_static shape (security.md §2),
    # so the opcode-level allow-list must refuse it on its own.
    problems = _pickle.opcode_problems(pickle.dumps(Sneaky(), 4))
    assert any("importlib.import_module" in p for p in problems)
    assert any("inspect.getattr_static" in p for p in problems)
    # nullifAI: payload, then an invalid opcode; a loader runs the payload before failing
    broken = _pickle.opcode_problems(EVIL_P4[:-1] + b"\xff junk")
    assert any("posix.system" in p for p in broken)
    assert any("opcode stream broken" in p for p in broken)
    assert _pickle.opcode_problems(pickle.dumps(collections.OrderedDict(a=1), 2)) == []


def test_bypass_shapes_are_refused_even_with_allow_pickle(tmp_path: Path) -> None:
    (tmp_path / "sneaky.bin").write_bytes(pickle.dumps(Sneaky(), 4))
    (tmp_path / "broken.bin").write_bytes(EVIL_P4[:-1] + b"\xff junk")
    report = scan_files(_files(tmp_path), Policy(allow_pickle=True), target="org/x")
    assert {f.path for f in report.violations} == {"sneaky.bin", "broken.bin"}
    with pytest.raises(PolicyError, match="inspect.getattr_static"):
        enforce_files("org/x", [("sneaky.bin", tmp_path / "sneaky.bin")], Policy(allow_pickle=True))


def test_picklescan_errors_count_as_failures() -> None:
    # a stream picklescan cannot parse (junk after the protocol header) is a failure, not "clean"
    problems = _pickle._picklescan_problems("x", b"\x80\x04\x95\xff\xff")
    assert problems and any("could not parse" in p or "failed" in p for p in problems)


def test_safetensors_header_is_validated(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    good = tmp_path / "model.safetensors"
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(good))
    assert _pickle.validate_safetensors(good) is None
    assert _pickle.sniff(good) is None
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[:-4])
    assert "outside" in (_pickle.validate_safetensors(truncated) or "")
    report = scan_files([("model.safetensors", good), ("trunc.safetensors", truncated)], Policy(), target="o/r")
    assert report.ok  # a broken safetensors cannot run code: reported, not refused
    assert [(f.path, f.kind) for f in report.findings] == [("trunc.safetensors", "invalid-safetensors")]
