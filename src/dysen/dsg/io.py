"""Reading DSG files (``dysen dsg validate``) and writing JSONL atomically (``dysen.atomic.write_text_atomic``).

Formats, by file suffix:

* ``.json`` — one DSG, or a list of DSGs (named ``file[i]``);
* ``.jsonl`` — one JSON value per non-blank line, a DSG or a record with a ``"dsg"`` field (named ``file:line``);
* anything else — the paper's tuple text (``dysen.dsg.textfmt.parse_dsg``), one DSG.

Every problem is a ``DSGError`` that names the file, and the line where there is one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dysen.atomic import write_text_atomic
from dysen.dsg.textfmt import MAX_TEXT_CHARS, parse_dsg
from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DSGError

MAX_FILE_BYTES = 256 * 2**20
"""Largest ``.json`` / ``.jsonl`` file of DSGs read (thousands of DSGs; each is bounded by ``DSGLimits``)."""
MAX_LINE_CHARS = 16_000_000
"""Longest ``.jsonl`` line: one DSG at every ``DSGLimits`` bound, all labels 100 characters, is about 8 MB of JSON."""


def read_dsgs(path: str | os.PathLike[str]) -> Iterator[tuple[str, DynamicSceneGraph]]:
    """Every DSG in ``path`` with where it came from (``file``, ``file[i]`` or ``file:line``), in order."""
    path = Path(path)
    limit = MAX_FILE_BYTES if path.suffix in (".json", ".jsonl") else 4 * MAX_TEXT_CHARS  # UTF-8: <= 4 bytes a char
    try:
        size = path.stat().st_size
        if size > limit:
            raise DSGError(f"{path}: the file has {size} bytes; DSG files of this kind are read up to {limit}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DSGError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DSGError(f"{path}: cannot read it as UTF-8 text: {err}") from None
    if path.suffix == ".jsonl":
        return _from_jsonl(path, text)
    if path.suffix == ".json":
        return _from_json(path, text)
    return iter([(str(path), _parsed(str(path), text))])


def _parsed(where: str, text: str) -> DynamicSceneGraph:
    try:
        return parse_dsg(text)
    except DSGError as err:
        raise DSGError(f"{where}: {err}") from None


def _from_json(path: Path, text: str) -> Iterator[tuple[str, DynamicSceneGraph]]:
    data = _parse_json(str(path), text, name_line=True)
    if not isinstance(data, list):
        yield str(path), _validated(str(path), data)
        return
    for index, item in enumerate(data):
        yield f"{path}[{index}]", _validated(f"{path}[{index}]", item)


def _from_jsonl(path: Path, text: str) -> Iterator[tuple[str, DynamicSceneGraph]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if len(line) > MAX_LINE_CHARS:
            raise DSGError(f"{where}: the line has {len(line)} characters; one DSG takes at most {MAX_LINE_CHARS}")
        data = _parse_json(where, line)
        if isinstance(data, dict) and "dsg" in data:
            data = data["dsg"]
        yield where, _validated(where, data)


def _parse_json(where: str, text: str, *, name_line: bool = False) -> Any:
    """``json.loads``, its failures as one ``DSGError`` naming ``where`` (``name_line``: and a syntax error's line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DSGError(f"{where}{f':{err.lineno}' if name_line else ''}: not valid JSON: {err.msg}") from None
    except ValueError:  # Python's integer-string limit (4,300 digits): no DSG holds such a number
        raise DSGError(f"{where}: a number has more digits than Python reads; no DSG holds such a number") from None
    except RecursionError:
        raise DSGError(f"{where}: the JSON is nested too deeply to be a DSG") from None


def _validated(where: str, data: Any) -> DynamicSceneGraph:
    try:
        return DynamicSceneGraph.from_dict(data)
    except DSGError as err:
        raise DSGError(f"{where}: {err}") from None


def write_jsonl_atomic(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line to ``path`` via a temporary file and ``os.replace``: all or nothing."""
    write_text_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
