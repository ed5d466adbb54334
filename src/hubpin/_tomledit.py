"""Replace one table (and its sub-tables) inside a TOML document, leaving the rest byte for byte.

Used to edit the user's own files: `[tool.hubpin]` in pyproject.toml, one `[models."org/name"]`
in hubpin.toml. The edit is checked by re-parsing: everything outside the table must parse to
what it was before, and the table must parse to the new value; otherwise `None` is returned and
the caller decides (rewrite the whole file, or refuse).
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import tomli_w

__all__ = ["replace_table"]

# a table header line: [a.b] or [[a.b]], optional trailing comment
_HEADER = re.compile(r"^[ \t]*(\[\[?)(?P<key>[^\[\]]+?)(\]\]?)[ \t]*(#.*)?$")


def _header_path(key: str) -> tuple[str, ...] | None:
    """The key path of a header, parsed by TOML itself (handles quotes and spaces around dots)."""
    try:
        doc: Any = tomllib.loads(f"[{key}]\n")
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    while isinstance(doc, dict) and len(doc) == 1:
        (name, doc), = doc.items()
        path.append(name)
    return tuple(path)


def _without(doc: dict[str, Any], prefix: tuple[str, ...]) -> dict[str, Any]:
    """A copy of `doc` without the table at `prefix` (and without parents it leaves empty)."""
    if not prefix or prefix[0] not in doc:
        return doc
    out = dict(doc)
    if len(prefix) == 1:
        del out[prefix[0]]
        return out
    child = out[prefix[0]]
    if not isinstance(child, dict):
        return out
    child = _without(child, prefix[1:])
    if child:
        out[prefix[0]] = child
    else:
        del out[prefix[0]]
    return out


def _get(doc: dict[str, Any], prefix: tuple[str, ...]) -> Any:
    for name in prefix:
        if not isinstance(doc, dict) or name not in doc:
            return None
        doc = doc[name]
    return doc


def _nest(prefix: tuple[str, ...], value: dict[str, Any]) -> dict[str, Any]:
    for name in reversed(prefix):
        value = {name: value}
    return value


def _spans(lines: list[str], prefix: tuple[str, ...]) -> list[tuple[int, int]]:
    """[start, end) line ranges of the header-delimited tables at or under `prefix`."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line.rstrip("\r\n"))
        if not m:
            continue
        path = _header_path(m.group("key"))
        inside = path is not None and path[: len(prefix)] == prefix
        if start is not None and not inside:
            spans.append((start, i))
            start = None
        if inside and start is None:
            start = i
    if start is not None:
        spans.append((start, len(lines)))
    return spans


def replace_table(
    text: str,
    prefix: tuple[str, ...],
    value: dict[str, Any] | None,
    *,
    near: tuple[tuple[str, ...], ...] = (),
    keep: tuple[str, ...] | None = None,
) -> str | None:
    """Return `text` with the table at `prefix` replaced by `value` (removed when None).

    A new table goes after the last table under the first of `near` that exists (so a repo
    lands beside its siblings inside `[tool.hubpin]`), else at the end. `keep` names a parent
    table that must survive a removal (an empty `[tool.hubpin]` still marks the project).
    Only header-delimited tables are handled; `None` means the edit could not be made safely.
    """
    result = _replace(text, prefix, value, near)
    if result is None or keep is None or value is not None:
        return result
    try:
        if _get(tomllib.loads(result), keep) is not None:
            return result
    except tomllib.TOMLDecodeError:
        return None
    # the removal emptied `keep`: leave its bare header where the removed table was
    marked = _replace(text, prefix, {}, near, placeholder=tomli_w.dumps(_nest(keep, {})))
    if marked is None:
        return None
    after = tomllib.loads(marked)
    if _get(after, keep) != {} or _without(tomllib.loads(text), prefix) != _without(after, keep):
        return None
    return marked


def _replace(
    text: str,
    prefix: tuple[str, ...],
    value: dict[str, Any] | None,
    near: tuple[tuple[str, ...], ...],
    placeholder: str | None = None,
) -> str | None:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    spans = _spans(lines, prefix)
    if not spans and value:
        for anchor in near:
            found = _spans(lines, anchor)
            if found:
                end = found[-1][1]
                spans = [(end, end)]  # an empty span: pure insertion
                break

    rendered = placeholder or ""
    if value:
        rendered = tomli_w.dumps(_nest(prefix, value))
        header = tomli_w.dumps(_nest(prefix, {}))  # e.g. '[tool.hubpin]\n'
        # tomli_w omits the header of a table that holds only sub-tables; keep it for the reader
        if not rendered.startswith(header):
            rendered = header + rendered
    out: list[str] = []
    pos = 0
    inserted = False
    for s, e in spans:
        out.extend(lines[pos:s])
        if not inserted and rendered:
            if s == e and s > 0 and lines[s - 1].strip():
                out.append("\n")  # inserting right after a table's last line
            out.append(rendered if e == len(lines) else rendered + "\n")
            inserted = True
        pos = e
    out.extend(lines[pos:])
    if rendered and not inserted:
        head = "".join(out)
        if head and not head.endswith("\n"):
            head += "\n"
        if head.strip():
            head += "\n"
        out = [head, rendered]
    new_text = "".join(out)
    if not value and new_text.strip():
        new_text = new_text.rstrip() + "\n"  # no run of blank lines where a last table was

    # the check that makes this safe: nothing else changed, and the table is exactly `value`
    try:
        before = tomllib.loads(text)
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        return None
    if placeholder is not None:
        return new_text  # the caller checks this variant
    if _without(before, prefix) != _without(after, prefix):
        return None
    if (_get(after, prefix) or None) != (value or None):
        return None
    return new_text
