"""Reading DSG files in every supported format, with errors that name file and line."""

from __future__ import annotations

import json
import os

import pytest

from dysen.cli import main
from dysen.dsg import Event, events_to_dsg, format_dsg, read_dsgs, write_jsonl_atomic
from dysen.errors import DSGError

DSG = events_to_dsg(
    [
        Event(agent="circle", predicate="moves right", start=0, end=2),
        Event(agent="square", predicate="hits", target="circle", start=1, end=3),
    ]
)


def test_json_holds_one_dsg_or_a_list(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(DSG.to_json(indent=2))
    assert list(read_dsgs(one)) == [(str(one), DSG)]
    many = tmp_path / "many.json"
    many.write_text(json.dumps([DSG.to_dict(), DSG.to_dict()]))
    assert [where for where, _ in read_dsgs(many)] == [f"{many}[0]", f"{many}[1]"]


def test_jsonl_lines_are_dsgs_or_records_with_a_dsg(tmp_path):
    path = tmp_path / "set.jsonl"
    write_jsonl_atomic(path, [DSG.to_dict(), {"id": "clip-1", "dsg": DSG.to_dict()}])
    assert list(read_dsgs(path)) == [(f"{path}:1", DSG), (f"{path}:2", DSG)]


def test_other_suffixes_are_the_tuple_text(tmp_path):
    path = tmp_path / "plan.txt"
    path.write_text(format_dsg(DSG))
    assert list(read_dsgs(path)) == [(str(path), DSG)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", '{\n  "graphs": [\n', "bad.json:3: not valid JSON"),
        ("bad.json", json.dumps([{"graphs": []}]), "bad.json[0]: invalid dynamic scene graph: graphs"),
        ("bad.jsonl", "\n{}\n", "bad.jsonl:2: invalid dynamic scene graph"),
        ("bad.jsonl", '{"dsg": {"graphs": [{}]}}\n{oops\n', "bad.jsonl:2: not valid JSON"),
        ("bad.txt", "0 SG: (a, b)\n1 SG: (a, b, c, d)", "bad.txt: line 2"),
        ("huge.json", '{"graphs": [], "events": [{"start": ' + "9" * 5000 + "}]}", "huge.json: a number has more"),
        ("deep.jsonl", "[" * 100_000 + "]" * 100_000, "deep.jsonl:1: the JSON is nested too deeply"),
    ],
)
def test_invalid_files_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DSGError) as info:
        list(read_dsgs(path))
    assert str(info.value).startswith(str(tmp_path)) and message in str(info.value)


def test_missing_and_unreadable_files_raise_at_once(tmp_path):
    with pytest.raises(DSGError, match="missing.json: no such file"):
        read_dsgs(tmp_path / "missing.json")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DSGError, match="blob.txt: cannot read it as UTF-8"):
        read_dsgs(binary)
    with pytest.raises(DSGError, match="cannot read"):
        read_dsgs(tmp_path)


def test_write_jsonl_atomic_replaces_whole_files_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    write_jsonl_atomic(path, [{"a": 1}, {"b": "é"}])
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'

    def records():
        yield {"c": 3}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, records())
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'
    assert os.listdir(path.parent) == ["out.jsonl"]


def test_cli_validate_summarises_each_dsg(tmp_path, capsys):
    path = tmp_path / "set.jsonl"
    write_jsonl_atomic(path, [DSG.to_dict()])
    assert main(["dsg", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}:1: ok (2 events, 3 steps)" in out and "1 valid DSG(s)" in out
    bad = tmp_path / "bad.txt"
    bad.write_text("(a, b, c)")
    assert main(["dsg", "validate", str(bad)]) == 1
    assert "bad.txt: line 1" in capsys.readouterr().err
