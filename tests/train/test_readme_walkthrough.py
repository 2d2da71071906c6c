"""The README's "your own target domain" commands, run verbatim on a folder of photos (offline, CPU)."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from dgqa_data.camera import simulate_capture
from dgqa_train import cli
from tests.fixtures.official import reference_crops

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> list[str]:
    text = README.read_text()
    section = text.split("## Your own target domain", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("dgqa ")]


@pytest.mark.slow
def test_readme_walkthrough_runs_verbatim(tmp_path, monkeypatch, capsys):
    mine, pristine = tmp_path / "my_photos", tmp_path / "pristine_photos"
    mine.mkdir()
    pristine.mkdir()
    crops = reference_crops(size=(160, 160), per_photo=1)
    for i, crop in enumerate(crops[:2]):
        Image.fromarray(crop).save(pristine / f"clean{i}.png")
    for i, crop in enumerate(crops[2:6]):
        for k in range(2):
            Image.fromarray(simulate_capture(crop, seed=10 * i + k).image).save(
                mine / f"shot{i}_{k}.jpg", quality=95
            )
    monkeypatch.chdir(tmp_path)
    commands = walkthrough()
    assert [c.split()[1] for c in commands] == [
        "build", "synth", "train-classifier", "score", "select", "subset", "train", "predict",
    ]  # fmt: skip
    for line in commands:
        line = line.replace("~/my_photos", str(mine)).replace("~/pristine_photos", str(pristine))
        rc = cli.main(shlex.split(line)[1:])
        assert rc == 0, f"{line}\n{capsys.readouterr().err[-2000:]}"
    assert (tmp_path / "runs/sel-mine/selection.json").is_file()
    rows = list(csv.DictReader((tmp_path / "runs/mine-quality.csv").read_text().splitlines()))
    assert len(rows) == 8 and all(0.0 <= float(r["quality"]) <= 1.0 for r in rows)
    assert (tmp_path / "hub/dgqa/synth-sel-mine/README.md").is_file()
    selected = json.loads((tmp_path / "runs/sel-mine/selection.json").read_text())["selected"]
    card = (tmp_path / "runs/reg-mine/README.md").read_text()
    assert f"distortion domains: {len(selected)} type(s) present in the data: {selected[0]} " in card
