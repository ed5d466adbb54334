"""Pickle detection by content, never by file name, and a deep check for when pickle is allowed.

Nothing here ever unpickles. Detection reads a bounded prefix and walks opcodes with
`pickletools.genops`; archives (zip, tar) are opened as archives and their members sniffed the
same way; 7z cannot be inspected with the standard library and is refused as pickle-family.

`deep_check` runs picklescan in strict (allow-list) mode on every pickle stream, counting a
scanner error or skip as a failure (security.md §2: gate on rc == 0, never on summary text),
and adds an opcode-level allow-list of its own, because picklescan passes the
`importlib.import_module` + `inspect.getattr_static` shape in default mode and a payload
followed by a broken opcode only shows up as a scan error.
"""

from __future__ import annotations

import io
import json
import logging
import pickletools
import re
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_STREAM_BYTES",
    "Sniffed",
    "deep_check",
    "is_pickle_bytes",
    "opcode_problems",
    "pickle_streams",
    "sniff",
    "sniff_prefix",
    "validate_safetensors",
]

#: how much of a file decides whether it is a pickle
PREFIX_BYTES = 64 * 1024
#: a pickle stream larger than this is not inspected (and so refused when pickle is allowed)
MAX_STREAM_BYTES = 512 * 1024 * 1024
#: how many tar/zip members are sniffed before giving up (an archive bomb of names)
MAX_MEMBERS = 10_000
#: safetensors caps its JSON header at 100 MB (safetensors spec)
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024

_7Z_MAGIC = b"7z\xbc\xaf\x27\x1c"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_COMPRESSED_TAR_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_NUMPY_MAGIC = b"\x93NUMPY"

#: globals a benign torch / numpy state dict needs; everything else is refused (allow-list)
_SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict"}),
    "torch._utils": frozenset({"_rebuild_tensor_v2", "_rebuild_parameter"}),
    "torch": frozenset(
        f"{t}Storage"
        for t in (
            "Long", "Float", "Half", "Double", "BFloat16", "Bool", "Char", "Short", "Int", "Byte",
            "ComplexFloat", "ComplexDouble", "QUInt2x4", "QUInt4x2", "QInt32", "QInt8", "QUInt8",
        )
    ),
    "numpy": frozenset({"dtype", "ndarray"}),
    "numpy.core.multiarray": frozenset({"_reconstruct"}),
    "numpy._core.multiarray": frozenset({"_reconstruct"}),
}  # fmt: skip

#: modules whose presence is named explicitly in the reason (any non-allow-listed global fails anyway)
_KNOWN_BAD = (
    "os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "runpy", "socket", "shutil",
    "importlib", "inspect", "pickle", "_pickle", "operator", "_operator", "functools", "types", "ctypes",
    "pty", "pydoc", "code", "webbrowser", "requests", "urllib", "http", "asyncio", "marshal",
)  # fmt: skip

_STRING_OPS = {"SHORT_BINUNICODE", "UNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
#: first opcodes of a protocol 0/1 pickle as Python writes them
_LEGACY_FIRST = set(b"(}])cNIJKLSVUXFGTM\x88\x89")


@dataclass(frozen=True)
class Sniffed:
    """What a pickle-family file is: its format, and the members holding pickles (archives)."""

    format: str
    members: tuple[str, ...] = ()
    #: False when the contents cannot be inspected (7z, unreadable archive): always refused
    inspectable: bool = True


def _walk(data: bytes | io.BytesIO, limit: int | None = None) -> tuple[int, bool, str | None]:
    """Walk opcodes: (count, reached STOP, error). Never executes anything."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    count = 0
    try:
        for op, _arg, _pos in pickletools.genops(stream):
            count += 1
            if op.name == "STOP":
                return count, True, None
            if limit is not None and count >= limit:
                return count, False, None
    except Exception as e:  # genops raises ValueError, struct.error, UnicodeDecodeError…
        return count, False, str(e) or type(e).__name__
    return count, False, None


def is_pickle_bytes(prefix: bytes, *, complete: bool = False) -> str | None:
    """`"pickle protocol N"` when `prefix` starts a pickle stream, else None.

    Protocol 2+ starts with `\\x80` and the protocol byte; the opcodes after it must parse.
    Protocol 0/1 has no magic, so the prefix must walk as a plausible opcode stream: reach STOP,
    or run to the end of a truncated prefix, or hold a global before breaking (a broken tail).
    """
    if len(prefix) < 2:
        return None
    if prefix[0] == 0x80 and 2 <= prefix[1] <= 5:
        count, stopped, err = _walk(prefix)
        # a truncated prefix ends in an error; a couple of good opcodes is plausible enough
        if stopped or count >= 3 or (err is None and count >= 2):
            return f"pickle protocol {prefix[1]}"
        return None
    if prefix[0] not in _LEGACY_FIRST:
        return None
    names, globals_found, stopped, pos = _legacy_walk(prefix)
    if not all(_IDENT.match(g) for g in globals_found):
        return None  # text that happens to start like GLOBAL (`c…`): no loader could import it
    structural = any(n in _STRUCTURAL for n in names)
    if stopped:
        return "pickle protocol 0/1" if len(names) >= 3 and structural and _stack_ok(prefix) else None
    if not complete and len(prefix) >= PREFIX_BYTES and pos >= len(prefix) - 16 and structural:
        return "pickle protocol 0/1"  # a big pickle cut by the prefix
    if globals_found and any(n in _CALLS for n in names):
        return "pickle protocol 0/1, broken"  # a payload, then junk (nullifAI)
    return None


#: opcodes that build or reference objects; text that happens to parse is only pushes and STOP
_STRUCTURAL = {
    "MARK", "DICT", "LIST", "TUPLE", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "SETITEM", "SETITEMS",
    "APPEND", "APPENDS", "BUILD", "REDUCE", "GLOBAL", "INST", "OBJ", "PUT", "BINPUT", "GET", "BINGET",
}  # fmt: skip
_CALLS = {"REDUCE", "BUILD", "OBJ", "INST", "NEWOBJ"}
_IDENT = re.compile(r"^[A-Za-z_][\w.]* [A-Za-z_][\w.]*$")


def _stack_ok(data: bytes) -> bool:
    """pickletools.dis simulates the stack (MARKs, pops, memo) without executing anything."""
    try:
        pickletools.dis(data, out=io.StringIO())
    except Exception:
        return False
    return True


def _legacy_walk(prefix: bytes) -> tuple[list[str], list[str], bool, int]:
    """(opcode names, `module name` of each GLOBAL/INST, reached STOP, position) of a prefix."""
    names: list[str] = []
    found: list[str] = []
    stream = io.BytesIO(prefix)
    try:
        for op, arg, _pos in pickletools.genops(stream):
            names.append(op.name)
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg))
            if op.name == "STOP":
                return names, found, True, stream.tell()
    except Exception:
        pass
    return names, found, False, stream.tell()


def read_prefix(path: Path, n: int = PREFIX_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _is_tar(prefix: bytes) -> bool:
    return len(prefix) >= 262 and prefix[257:262] == b"ustar"


def _numpy_has_objects(prefix: bytes) -> bool:
    """A `.npy` whose dtype holds Python objects is a pickle after the header."""
    if not prefix.startswith(_NUMPY_MAGIC) or len(prefix) < 10:
        return False
    major = prefix[6]
    if major == 1:
        hlen, start = struct.unpack("<H", prefix[8:10])[0], 10
    else:
        hlen, start = struct.unpack("<I", prefix[8:12])[0], 12
    header = prefix[start : start + hlen].decode("latin-1", "replace")
    return "'O'" in header or "|O" in header or "object" in header


def _member_kind(name: str, head: bytes, complete: bool) -> str | None:
    if _numpy_has_objects(head):
        return "numpy object array"
    return is_pickle_bytes(head, complete=complete)


def sniff(path: Path, prefix: bytes | None = None) -> Sniffed | None:
    """Is `path` pickle-family by content? Returns what it is, or None for anything else.

    `prefix`: the file's first `PREFIX_BYTES` bytes when the caller has read them already."""
    if prefix is None:
        prefix = read_prefix(path)
    complete = len(prefix) < PREFIX_BYTES
    if prefix.startswith(_7Z_MAGIC):
        return Sniffed("7z archive, cannot inspect", inspectable=False)
    if prefix.startswith(_ZIP_MAGICS):
        return _sniff_zip(path)
    if _is_tar(prefix) or prefix.startswith(_COMPRESSED_TAR_MAGICS):
        return _sniff_tar(path, compressed=not _is_tar(prefix))
    if _numpy_has_objects(prefix):
        return Sniffed("numpy object array (pickle)")
    kind = is_pickle_bytes(prefix, complete=complete)
    return Sniffed(kind) if kind else None


def sniff_prefix(prefix: bytes) -> Sniffed | None:
    """Like `sniff`, from the first bytes only (a remote file fetched with a Range request).

    Archives are judged by their first member (torch writes `<name>/data.pkl` first); an
    archive that looks clean here is checked in full when its bytes are local (sync, import).
    """
    if prefix.startswith(_7Z_MAGIC):
        return Sniffed("7z archive, cannot inspect", inspectable=False)
    if prefix.startswith(b"PK\x03\x04") and len(prefix) >= 30:
        method, = struct.unpack("<H", prefix[8:10])
        n, m = struct.unpack("<HH", prefix[26:30])
        name = prefix[30 : 30 + n].decode("utf-8", "replace")
        data = prefix[30 + n + m :] if method == 0 else b""
        if name.endswith((".pkl", ".pickle")) or (data and _member_kind(name, data, False)):
            return Sniffed("torch zip archive" if name.endswith("data.pkl") else "zip containing pickle", (name,))
        return None
    if _is_tar(prefix):
        name = prefix[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if _member_kind(name, prefix[512:], False):
            return Sniffed("tar containing pickle", (name,))
        return None
    if _numpy_has_objects(prefix):
        return Sniffed("numpy object array (pickle)")
    kind = is_pickle_bytes(prefix, complete=False)
    return Sniffed(kind) if kind else None


def _sniff_zip(path: Path) -> Sniffed | None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                return Sniffed(f"zip with {len(infos)} members, cannot inspect", inspectable=False)
            members = []
            torch = False
            for info in infos:
                if info.is_dir():
                    continue
                with zf.open(info) as m:
                    head = m.read(PREFIX_BYTES)
                kind = _member_kind(info.filename, head, len(head) < PREFIX_BYTES)
                if kind or info.filename.endswith((".pkl", ".pickle")):
                    members.append(info.filename)
                    torch = torch or info.filename.endswith("data.pkl")
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as e:
        return Sniffed(f"zip archive, cannot inspect ({e})", inspectable=False)
    if not members:
        return None
    return Sniffed("torch zip archive" if torch else "zip containing pickle", tuple(members))


def _sniff_tar(path: Path, *, compressed: bool) -> Sniffed | None:
    try:
        with tarfile.open(path, "r:*") as tf:
            members = []
            for n, info in enumerate(tf):
                if n >= MAX_MEMBERS:
                    return Sniffed("tar with too many members, cannot inspect", inspectable=False)
                if not info.isfile():
                    continue
                f = tf.extractfile(info)
                if f is None:
                    continue
                head = f.read(PREFIX_BYTES)
                if _member_kind(info.name, head, len(head) < PREFIX_BYTES):
                    members.append(info.name)
    except (tarfile.TarError, EOFError, OSError) as e:
        if compressed:
            return None  # a plain .gz/.bz2/.xz that is not a tar: not pickle-family by itself
        return Sniffed(f"tar archive, cannot inspect ({e})", inspectable=False)
    if not members:
        return None
    return Sniffed("tar containing pickle", tuple(members))


def pickle_streams(path: Path, sniffed: Sniffed) -> Iterator[tuple[str, bytes]]:
    """Yield (name, bytes) of each pickle stream in the file; raises ValueError if one is too big."""
    if sniffed.members and sniffed.format.startswith(("torch zip", "zip")):
        with zipfile.ZipFile(path) as zf:
            for name in sniffed.members:
                info = zf.getinfo(name)
                if info.file_size > MAX_STREAM_BYTES:
                    raise ValueError(f"{name}: {info.file_size} bytes is too large to inspect")
                yield name, _strip_numpy(zf.read(info))
        return
    if sniffed.members:
        with tarfile.open(path, "r:*") as tf:
            wanted = set(sniffed.members)
            for info in tf:
                if info.isfile() and info.name in wanted:
                    if info.size > MAX_STREAM_BYTES:
                        raise ValueError(f"{info.name}: {info.size} bytes is too large to inspect")
                    f = tf.extractfile(info)
                    if f is not None:
                        yield info.name, _strip_numpy(f.read())
        return
    size = path.stat().st_size
    if size > MAX_STREAM_BYTES:
        raise ValueError(f"{size} bytes is too large to inspect")
    yield "", _strip_numpy(path.read_bytes())


def _strip_numpy(data: bytes) -> bytes:
    if not data.startswith(_NUMPY_MAGIC):
        return data
    if data[6] == 1:
        return data[10 + struct.unpack("<H", data[8:10])[0] :]
    return data[12 + struct.unpack("<I", data[8:12])[0] :]


def opcode_problems(data: bytes) -> list[str]:
    """Every reason to refuse a pickle stream, by walking its opcodes (allow-list of globals).

    A stream may hold several pickles back to back (legacy torch files); walking stops at the
    first byte that does not start another pickle. A parse error inside a pickle is a problem:
    a loader would run everything before it (nullifAI's "payload, then a broken opcode").
    """
    problems: list[str] = []
    stream = io.BytesIO(data)
    seen_any = False
    while stream.tell() < len(data):
        start = stream.tell()
        if seen_any and not is_pickle_bytes(data[start : start + PREFIX_BYTES], complete=True):
            break  # raw storage bytes after the pickles of a legacy torch file
        globals_found, error = _globals_of_one(stream)
        seen_any = True
        for module, name in sorted(globals_found):
            allowed = _SAFE_GLOBALS.get(module)
            if allowed is None or name not in allowed:
                problems.append(f"global {module}.{name} is not allow-listed{_why(module)}")
        if error is not None:
            problems.append(f"opcode stream broken at byte {stream.tell()}: {error}")
            break
    if not seen_any:
        problems.append("no pickle stream found")
    return sorted(set(problems), key=problems.index)


def _why(module: str) -> str:
    root = module.split(".")[0]
    return " (can run code)" if root in _KNOWN_BAD else ""


def _globals_of_one(stream: io.BytesIO) -> tuple[set[tuple[str, str]], str | None]:
    """Globals named by one pickle (GLOBAL, INST, STACK_GLOBAL via strings or memo)."""
    found: set[tuple[str, str]] = set()
    memo: dict[int, object] = {}
    ops: list[tuple[str, object]] = []
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name == "MEMOIZE" and ops:
                memo[len(memo)] = ops[-1][1]
            elif name in _MEMO_PUT and ops:
                memo[int(arg)] = ops[-1][1]  # type: ignore[arg-type]
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.add((module, attr))
            elif name == "STACK_GLOBAL":
                found.add(_stack_global(ops, memo))
            ops.append((name, arg))
            if name == "STOP":
                return found, None
    except Exception as e:
        return found, str(e) or type(e).__name__
    return found, "ends without STOP"


def _stack_global(ops: list[tuple[str, object]], memo: dict[int, object]) -> tuple[str, str]:
    values: list[str] = []
    for name, arg in reversed(ops):
        if name in _MEMO_PUT or name == "MEMOIZE":
            continue
        if name in _MEMO_GET:
            value = memo.get(int(arg))  # type: ignore[arg-type]
            values.append(value if isinstance(value, str) else "<unknown>")
        elif name in _STRING_OPS:
            values.append(str(arg))
        else:
            values.append("<unknown>")
        if len(values) == 2:
            break
    while len(values) < 2:
        values.append("<unknown>")
    return values[1], values[0]


class _Records(logging.Handler):
    """Collects picklescan's warnings: it reports some parse failures only as a log line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _picklescan_problems(name: str, data: bytes) -> list[str]:
    """picklescan in strict allow-list mode; an error, a skip or a parse failure counts as failure."""
    from picklescan import scanner  # imported late: only needed when pickle is allowed

    log = logging.getLogger("picklescan")
    records = _Records()
    old_level, old_propagate = log.level, log.propagate
    log.setLevel(logging.WARNING)
    log.propagate = False  # we report; its logger would print to stderr
    log.addHandler(records)
    try:
        result = scanner.scan_pickle_bytes(io.BytesIO(data), name or "file", strict=True)
    except Exception as e:  # the CLI maps any exception to rc 2
        return [f"picklescan failed: {e}"]
    finally:
        log.removeHandler(records)
        log.setLevel(old_level)
        log.propagate = old_propagate
    problems = []
    if result.scanned_files == 0:
        problems.append("picklescan skipped it")
    parse_failed = [m for m in records.messages if "could not parse" in m or "ERROR" in m]
    if result.scan_err or parse_failed:
        problems.append("picklescan could not parse it")
    if result.issues_count:
        bad = sorted(f"{g.module}.{g.name}" for g in result.globals if g.safety.value != "innocuous")
        problems.append(f"picklescan --strict: {', '.join(bad) or result.issues_count} dangerous")
    return problems


def deep_check(path: Path, sniffed: Sniffed) -> list[str]:
    """Reasons to refuse a pickle-family file even when pickle is allowed; empty means it passes."""
    if not sniffed.inspectable:
        return [f"{sniffed.format}: its contents cannot be checked"]
    problems: list[str] = []
    try:
        for name, data in pickle_streams(path, sniffed):
            where = f"{name}: " if name else ""
            for p in _picklescan_problems(name, data) + opcode_problems(data):
                problems.append(where + p)
    except (ValueError, OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        problems.append(f"cannot inspect: {e}")
    return problems


def validate_safetensors(path: Path) -> str | None:
    """None when `path` has a sound safetensors header (length, JSON, offsets in bounds), else why not."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes is too short for a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if n > SAFETENSORS_MAX_HEADER or n + 8 > size:
            return f"header length {n} does not fit in {size} bytes"
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"header is not JSON ({e.__class__.__name__})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    body = size - 8 - n
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body
        ):
            return f"tensor {key!r}: data_offsets {offsets!r} outside the {body}-byte buffer"
    return None
