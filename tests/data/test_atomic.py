"""Atomic writes: the old file survives a failed write, no temporary is left, JSON is strict."""

import json
import math

import pytest

from dgqa_data.atomic import temp_sibling, write_atomic, write_json


def test_text_bytes_and_writer_functions(tmp_path) -> None:
    assert write_atomic(tmp_path / "sub" / "a.txt", "é\n").read_text(encoding="utf-8") == "é\n"
    assert write_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    seen = []

    def writer(p):
        seen.append(p)
        p.write_text("from a writer")

    assert write_atomic(tmp_path / "c.npz", writer).read_text() == "from a writer"
    assert seen == [temp_sibling(tmp_path / "c.npz")] and seen[0].suffix == ".npz" and seen[0].name.startswith(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "c.npz", "sub"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    target = write_json(tmp_path / "results.json", {"epoch": 1})

    def broken(p):
        p.write_text('{"epoch": ')  # half a file, then the disk fills up
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(target, broken)
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_json_is_strict(tmp_path) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(tmp_path / "x.json", {"srcc": math.nan})
    assert not list(tmp_path.iterdir())
    text = write_json(tmp_path / "y.json", {"b": 1, "a": [1, 2]}, sort_keys=True).read_text()
    assert text == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
