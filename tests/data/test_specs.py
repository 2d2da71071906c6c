"""Dataset specs (``PATH``, ``PATH:SPLIT``, split sets): the one parser, :func:`dgqa_data.specs.parse_spec`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgqa_data.errors import DgqaError
from dgqa_data.paths import local_path
from dgqa_data.selection import target_name
from dgqa_data.specs import DatasetSpec, SplitName, parse_spec, parse_split_name
from dgqa_data.splits import SplitTable, resolve_name


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Relative specs resolve in a folder holding ``a:b`` (a dataset folder with a colon in its
    name), ``data/livec`` and a file ``x:test``."""
    (tmp_path / "a:b").mkdir()
    (tmp_path / "data" / "livec").mkdir(parents=True)
    (tmp_path / "x:test").write_text("")
    monkeypatch.chdir(tmp_path)


# spec -> (path, split, SplitName of the split or None)
CASES = [
    # plain paths and Hub ids
    ("data/livec", "data/livec", None, None),
    ("data/livec/", "data/livec/", None, None),
    ("org/name", "org/name", None, None),
    ("org/name:test", "org/name", "test", SplitName("test")),
    ("org/name/:test", "org/name/", "test", SplitName("test")),
    ("hub/dgqa/livec:validation", "hub/dgqa/livec", "validation", SplitName("validation")),
    ("missing:train", "missing", "train", SplitName("train")),
    ("~/no-such-dgqa-dataset:test", "~/no-such-dgqa-dataset", "test", SplitName("test")),
    # an existing path with a colon is a path; the last colon names the split
    ("a:b", "a:b", None, None),
    ("x:test", "x:test", None, None),
    ("a:b:test", "a:b", "test", SplitName("test")),
    ("a:b/", "a:b/", None, None),
    ("a:b/missing", "a:b/missing", None, None),
    # Windows paths: a drive letter is not a split
    ("C:\\data\\livec", "C:\\data\\livec", None, None),
    ("C:/data/livec", "C:/data/livec", None, None),
    ("C:", "C:", None, None),
    ("C:/data/livec:test", "C:/data/livec", "test", SplitName("test")),
    ("C:\\data\\livec:split-03-test", "C:\\data\\livec", "split-03-test", SplitName("split_03", 3, False, "test")),
    # seeded split sets
    ("data/livec:split-03", "data/livec", "split-03", SplitName("split_03", 3)),
    ("data/livec:split-3", "data/livec", "split-3", SplitName("split_03", 3)),
    ("data/livec:split-03-train", "data/livec", "split-03-train", SplitName("split_03", 3, False, "train")),
    ("data/livec:split-03-test", "data/livec", "split-03-test", SplitName("split_03", 3, False, "test")),
    ("data/livec:split-09-validation", "data/livec", "split-09-validation", SplitName("split_09", 9, False, "val")),
    ("data/livec:split-*", "data/livec", "split-*", SplitName(None, None, True)),
    ("data/livec:split-*-test", "data/livec", "split-*-test", SplitName(None, None, True, "test")),
    ("data/livec:split-03-x", "data/livec", "split-03-x", SplitName("split-03-x")),
    ("data/livec:split-123", "data/livec", "split-123", SplitName("split-123")),
    # the official and imported split sets
    ("data/livec:official", "data/livec", "official", SplitName("official")),
    ("data/livec:official-val", "data/livec", "official-val", SplitName("official", part="val")),
    ("data/livec:official-validation", "data/livec", "official-validation", SplitName("official", part="val")),
    ("data/livec:official-testing", "data/livec", "official-testing", SplitName("official", part="test")),
    ("data/livec:user_koniq_split", "data/livec", "user_koniq_split", SplitName("user_koniq_split")),
    ("org/name:user_x_fold_1-train", "org/name", "user_x_fold_1-train", SplitName("user_x_fold_1", part="train")),
    ("data/livec:user_a-b", "data/livec", "user_a-b", SplitName("user_a-b")),
]


@pytest.mark.parametrize("text, path, split, name", CASES, ids=[c[0] for c in CASES])
def test_parse_spec(text, path, split, name) -> None:
    spec = parse_spec(text)
    assert (spec.text, spec.path, spec.split) == (text, path, split)
    assert SplitName(spec.column, spec.fold, spec.all_folds, spec.part) == (name or SplitName(None))
    if split is not None:
        assert parse_split_name(split) == name
        assert spec.with_split(split) == text


@pytest.mark.parametrize(
    "text, kind",
    [
        ("data/livec", None),
        ("data/livec:test", "split"),
        ("data/livec:split-03-test", "seeded"),
        ("data/livec:split-*", "seeded"),
        ("data/livec:official-val", "official"),
        ("data/livec:user_koniq_split-test", "user"),
    ],
)
def test_kind(text, kind) -> None:
    assert parse_spec(text).kind == kind


@pytest.mark.parametrize(
    "text, local, name, hub_id",
    [
        ("data/livec", "data/livec", "livec", None),
        ("data/livec/:split-03", "data/livec", "livec", None),
        ("a:b", "a:b", "a:b", None),
        ("a:b:official", "a:b", "a:b", None),
        ("org/name:test", None, "name", "org/name"),
        ("org/name/", None, "name", "org/name"),
        ("hub/dgqa/livec:test", None, "livec", None),
        ("C:\\data\\livec:test", None, "livec", None),
        ("C:/data/livec", None, "livec", None),
        ("missing:test", None, "missing", None),
    ],
)
def test_local_name_and_hub_id(text, local, name, hub_id) -> None:
    spec = parse_spec(text)
    assert spec.local == (Path(local) if local else None)
    assert local_path(text) == spec.local
    assert (spec.name, target_name(text), spec.hub_id) == (name, name, hub_id)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty dataset spec: give PATH or PATH:SPLIT"),
        (":test", "dataset spec ':test': no dataset before ':' (PATH:SPLIT)"),
        (
            "data/missing:",
            "dataset spec 'data/missing:': no split name after ':' (PATH:SPLIT, or PATH for the whole dataset)",
        ),
        (
            "org/name:",
            "dataset spec 'org/name:': no split name after ':' (PATH:SPLIT, or PATH for the whole dataset)",
        ),
    ],
)
def test_bad_specs(text, message) -> None:
    with pytest.raises(DgqaError) as err:
        parse_spec(text)
    assert str(err.value) == message
    with pytest.raises(DgqaError):
        local_path(text)


def test_an_existing_folder_ending_in_a_colon_is_a_path(tmp_path) -> None:
    (tmp_path / "d:").mkdir()
    assert parse_spec("d:") == DatasetSpec("d:", "d:")


def test_split_set_names_resolve_in_a_table() -> None:
    """The splits table reads names with the same parser (a column named as is wins over a part suffix)."""
    table = SplitTable.from_csv(
        "image_id,mos,mos_std,split_00,split_03,official,user_a_b,user_a_b-test\n"
        "i,1,,train,test,train,val,test\n"
    )
    assert resolve_name("split-03", table) == ("split_03", None)
    assert resolve_name("split-3-test", table) == ("split_03", "test")
    assert resolve_name("split-03-validation", table) == ("split_03", "val")
    assert resolve_name("official-validation", table) == ("official", "val")
    assert resolve_name("user_a_b-train", table) == ("user_a_b", "train")
    assert resolve_name("user_a_b-test", table) == ("user_a_b-test", None)
    for unknown in ("split-04", "split-*", "official-x", "mos", "test"):
        assert resolve_name(unknown, table) is None, unknown
