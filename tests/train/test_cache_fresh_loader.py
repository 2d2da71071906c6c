"""dgqa's own loader (training, scoring, evaluation) reads a rebuilt dataset as it is on disk now."""

from __future__ import annotations

from dgqa_train.data import load_iqa_dataset
from tests.data.test_cache_fresh import FIRST, SECOND, build, by_name, shots  # noqa: F401


def test_load_iqa_dataset_after_a_rebuild_and_for_same_name_folders(shots, tmp_path):  # noqa: F811
    out = tmp_path / "hub" / "mine"
    build(shots, out, "l1.csv")
    assert load_iqa_dataset(str(out)).sort("image_id")["mos"] == by_name(FIRST)
    build(shots, out, "l2.csv", "--overwrite")
    assert load_iqa_dataset(str(out)).sort("image_id")["mos"] == by_name(SECOND)
    other = tmp_path / "elsewhere" / "mine"
    build(shots, other, "l1.csv")
    assert load_iqa_dataset(str(other)).sort("image_id")["mos"] == by_name(FIRST)
    assert load_iqa_dataset(str(out)).sort("image_id")["mos"] == by_name(SECOND)
