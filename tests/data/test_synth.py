"""dgqa synth: plans, labels, determinism across processes and shards, resume, KADIS file output."""

import json
from pathlib import Path

import datasets
import pytest

from dgqa_data.build import build_corpus
from dgqa_data.cli import main as cli
from dgqa_data.synth import find_references, synthesize
from tests.fixtures.kadis700k import make_kadis700k
from tests.fixtures.official import encode, reference_crops


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("refs")
    for i, crop in enumerate(reference_crops(size=(64, 48))[:4]):
        (folder / f"photo{i}.png").write_bytes(encode(crop, "PNG"))
    return folder


def load(out: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(out), split="train")


def test_full_plan_rows_and_labels(refs, tmp_path):
    out = synthesize(refs, tmp_path / "s", plan="full", types=[1, 10, 23], levels=[1, 5], progress=False)
    ds = load(out)
    assert len(ds) == 4 * (1 + 3 * 2)
    assert ds.features["distortion_type"].names[23] == "color_block"
    rows = ds.remove_columns("image").to_list()
    pristine = [r for r in rows if r["distortion_type"] == 0]
    assert [r["image_id"] for r in pristine] == ["photo0.png", "photo1.png", "photo2.png", "photo3.png"]
    r = next(r for r in rows if r["image_id"] == "photo1_23_05.png")
    assert (r["reference_id"], r["distortion_level"], r["domain"], r["mos"]) == (
        "photo1.png",
        5,
        "color_block",
        None,
    )
    draws = json.loads(r["draws"])
    assert len(draws["blocks"]) == 10  # level 5 of color block draws 10 blocks
    assert ds[0]["image"].size == (64, 48)
    card = (out / "README.md").read_text()
    assert "| 23 | color_block |" in card and "substitute" in card  # registry table, 06/15 flagged


def test_random_plan_is_seeded(refs, tmp_path):
    a = synthesize(
        refs, tmp_path / "a", plan="random", types_per_reference=2, levels=[3], seed=7, progress=False
    )
    b = synthesize(
        refs, tmp_path / "b", plan="random", types_per_reference=2, levels=[3], seed=8, progress=False
    )
    types = lambda out: [(r["reference_id"], r["distortion_type"]) for r in load(out).remove_columns("image")]  # noqa: E731
    ta = types(a)
    assert len(ta) == 4 * (1 + 2)
    per_ref = {ref: sorted(t for rr, t in ta if rr == ref and t) for ref, _ in ta}
    assert all(len(v) == 2 for v in per_ref.values())
    assert ta != types(b)


def test_same_name_outputs_load_their_own_rows(refs, tmp_path):
    """Two synth outputs named alike, loaded in one HF_HOME: each card carries its content's hash."""
    from dgqa_data.hub_folder import is_stamped, read_card_metadata

    kw = {"plan": "random", "types_per_reference": 1, "levels": [2], "progress": False}
    a = synthesize(refs, tmp_path / "a" / "s", seed=1, types=[1, 2], **kw)
    b = synthesize(refs, tmp_path / "b" / "s", seed=1, types=[3, 4], **kw)
    assert is_stamped(read_card_metadata(a)) and is_stamped(read_card_metadata(b))
    assert {t for t in load(a)["distortion_type"] if t} <= {1, 2}
    assert {t for t in load(b)["distortion_type"] if t} <= {3, 4}


def test_byte_identical_whatever_the_process_count(refs, tmp_path):
    kw = {
        "plan": "full",
        "types": [3, 11, 19, 20],
        "levels": [2, 4],
        "refs_per_shard": 1,
        "seed": 3,
        "progress": False,
    }
    one = synthesize(refs, tmp_path / "one", **kw)
    two = synthesize(refs, tmp_path / "two", num_proc=2, **kw)
    # the same work split for a scheduler: 3 jobs, the last finalises
    for i in range(3):
        done = synthesize(refs, tmp_path / "sched", num_shards=3, shard_index=i, **kw)
        assert (done is None) == (i < 2)
    files = sorted(p.name for p in (one / "data").iterdir())
    assert len(files) == 4 and files[0] == "train-00000-of-00004.parquet"
    for name in files:
        data = (one / "data" / name).read_bytes()
        assert data == (two / "data" / name).read_bytes() == (tmp_path / "sched" / "data" / name).read_bytes()


def test_threads_that_distort_change_no_byte(refs, tmp_path, monkeypatch):
    """Every type, distorted and labelled by 1 thread and by 3 (results taken in order, 4 ahead)."""
    import dgqa_data.synth as synth

    kw = {"plan": "full", "levels": [3], "labels": "ms-ssim", "refs_per_shard": 2, "progress": False}
    outs = {}
    for n in (1, 3):
        monkeypatch.setattr(synth, "distort_threads", lambda n=n: n)
        outs[n] = synthesize(refs, tmp_path / f"t{n}", **kw)
    files = sorted(p.name for p in (outs[1] / "data").iterdir())
    assert files == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert all((outs[1] / "data" / f).read_bytes() == (outs[3] / "data" / f).read_bytes() for f in files)
    rows = load(outs[3])
    assert len(rows) == 4 * 26 and sorted(set(rows["distortion_type"])) == list(range(26))
    assert all(1 <= m <= 5 for m in rows["mos"])


def test_resume_skips_finished_shards_and_checks_the_plan(refs, tmp_path):
    kw = {"plan": "full", "types": [1], "levels": [1], "refs_per_shard": 2, "progress": False}
    assert synthesize(refs, tmp_path / "r", num_shards=2, shard_index=0, **kw) is None
    partial = tmp_path / ".r.partial"
    first = partial / "data" / "train-00000-of-00002.parquet"
    stamp = first.stat().st_mtime_ns
    with pytest.raises(ValueError, match="different plan"):
        synthesize(refs, tmp_path / "r", plan="full", types=[2], levels=[1], refs_per_shard=2, progress=False)
    half = partial / "data" / "train-00001-of-00002.tmp-99999"  # a shard a killed run was writing
    half.write_bytes(b"PAR1 half a shard")
    out = synthesize(refs, tmp_path / "r", **kw)  # a plain rerun: resumes, does shard 1 only
    assert out == tmp_path / "r" and not partial.exists()
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert (out / "data" / "train-00000-of-00002.parquet").stat().st_mtime_ns == stamp
    assert len(load(out)) == 4 * 2
    with pytest.raises(FileExistsError):
        synthesize(refs, tmp_path / "r", **kw)


def test_a_finalizer_killed_half_way_is_taken_over(refs, tmp_path):
    from dgqa_data.paths import process_owner

    kw = {"plan": "full", "types": [1], "levels": [1], "refs_per_shard": 2, "progress": False}
    assert synthesize(refs, tmp_path / "r", num_shards=2, shard_index=0, **kw) is None
    lock = tmp_path / ".r.partial" / ".finalizing"
    lock.write_text(f"{process_owner().rsplit('-', 1)[0]}-999999999")  # a finalizer that was killed
    out = synthesize(refs, tmp_path / "r", **kw)
    assert out == tmp_path / "r" and len(load(out)) == 4 * 2 and not (out / ".finalizing").exists()

    # a live finalizer (this process) is never overtaken: the rerun leaves it alone
    assert synthesize(refs, tmp_path / "s", num_shards=2, shard_index=0, **kw) is None
    lock = tmp_path / ".s.partial" / ".finalizing"
    lock.write_text(process_owner())
    assert synthesize(refs, tmp_path / "s", **kw) is None and not (tmp_path / "s").exists()


def test_kadis_plan_reads_the_official_csv_and_round_trips_through_the_builder(tmp_path):
    root = make_kadis700k(tmp_path / "kadis700k", generate=False)
    refs = find_references(root)
    assert [r.csv_type for r in refs] == [1, 8, 10, 7]  # the "7,8" row is type 8
    out = tmp_path / "generated"
    cli(["synth", "--source", str(root), "--out", str(out), "--plan", "kadis", "--format", "kadis-files"])
    names = sorted(p.name for p in (out / "dist_imgs").iterdir())
    assert len(names) == 4 * 5
    assert "astronaut-crop-2_08_03.bmp" in names and "coffee_10_05.bmp" in names  # official stem rule
    report = build_corpus("kadis700k", out, tmp_path / "hub" / "kadis700k", progress=False)
    ds = datasets.load_dataset(str(tmp_path / "hub" / "kadis700k"), split="train").remove_columns("image")
    assert report.num_rows == len(ds) == 4 + 20
    types = sorted({r["distortion_type"] for r in ds})
    assert types == [0, 1, 7, 8, 10]


def test_bad_arguments_are_clear(refs, tmp_path):
    with pytest.raises(ValueError, match="unknown plan"):
        synthesize(refs, tmp_path / "x", plan="all")
    with pytest.raises(ValueError, match="types must be in 1..25"):
        synthesize(refs, tmp_path / "x", types=[26])
    with pytest.raises(ValueError, match="shard-index 3"):
        synthesize(refs, tmp_path / "x", num_shards=2, shard_index=3)
    from dgqa_data.corpora.base import CorpusError

    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no pristine images"):
        synthesize(tmp_path / "empty", tmp_path / "x")
    with pytest.raises(ValueError, match=r"--out .*/out sits inside the synth source"):
        synthesize(refs, refs / "out")
    assert not (refs / "out").exists() and not list(refs.glob(".out*"))


def test_pseudo_mos_labels_fall_with_level(refs, tmp_path):
    out = synthesize(
        refs,
        tmp_path / "p",
        plan="full",
        types=[1],
        levels=[1, 5],
        include_pristine=False,
        labels="ms-ssim",
        progress=False,
    )
    rows = load(out).remove_columns("image").to_list()
    assert len(rows) == 4 * 2
    by_level = {lv: [r["mos"] for r in rows if r["distortion_level"] == lv] for lv in (1, 5)}
    # sigma 0.1 blur is near identity (only the min-max wrapper changes the image); sigma 5 is heavy
    assert all(4.5 < m <= 5.0 for m in by_level[1])
    assert all(m < 3.5 for m in by_level[5])
    assert all(a - b > 1.5 for a, b in zip(by_level[1], by_level[5]))
    assert all(r["quality"] == pytest.approx((r["mos"] - 1) / 4) for r in rows)
    assert "pseudo-MOS" in (out / "README.md").read_text()


def test_severity_labels_follow_type_and_level(refs, tmp_path):
    out = synthesize(
        refs, tmp_path / "s", plan="full", types=[1, 3], levels=[1, 5], labels="severity", progress=False
    )
    rows = load(out).remove_columns("image").to_list()
    got = {(r["distortion_type"], r["distortion_level"]): r["mos"] for r in rows}
    # quality = 1 - 0.8 * severity, mos = 1 + 4 * quality; motion blur level 1 is the identity
    assert got == pytest.approx({(0, 0): 5.0, (1, 1): 4.36, (1, 5): 1.8, (3, 1): 5.0, (3, 5): 1.8})
    assert "severity label" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="unknown labels 'mos'"):
        synthesize(refs, tmp_path / "bad", labels="mos")


def test_default_shards_give_every_process_work(refs, tmp_path):
    from dgqa_data.synth import auto_refs_per_shard

    assert [auto_refs_per_shard(n) for n in (1, 4, 16, 17, 300, 10_000)] == [1, 1, 1, 2, 19, 32]
    out = synthesize(refs, tmp_path / "a", types=[1], levels=[1], progress=False)
    assert len(list((out / "data").glob("train-*.parquet"))) == 4  # 4 references, one shard each
    assert "refs_per_shard: 1" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    ("flag", "fmt", "magic"),
    [("--image-format", "png", b"\x89PNG"), ("--image-format", "webp", b"RIFF"), ("--encoding", "bmp", b"BM")],
)
def test_image_formats_decode_to_the_distorted_pixels(refs, tmp_path, flag, fmt, magic):
    """Every format (and the former --encoding spelling) decodes with Pillow to exactly the array the
    distortion made: lossless; names carry the format's extension."""
    import io

    import numpy as np
    from PIL import Image

    from dgqa_data.distortions import distort_with_draws
    from dgqa_data.images import open_rgb

    out = tmp_path / fmt
    argv = ["synth", "--source", str(refs), "--out", str(out), "--types", "1,9,16,19,23", "--levels", "1,5"]
    assert cli([*argv, flag, fmt]) == 0
    ds = load(out).cast_column("image", datasets.Image(decode=False))
    assert len(ds) == 4 * (1 + 5 * 2)
    pristine = {p.name: np.asarray(open_rgb(p)) for p in refs.iterdir()}
    for row in ds:
        data = row["image"]["bytes"]
        assert data.startswith(magic) and row["image_id"].endswith(f".{fmt}")
        ref = pristine[row["reference_id"]]
        tid, level = row["distortion_type"], row["distortion_level"]
        want = ref if tid == 0 else distort_with_draws(ref, tid, level, row["seed"])[0]
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), want)
    assert f"encoding: {fmt}" in (out / "README.md").read_text()


@pytest.mark.parametrize("fmt", ["png", "webp"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (33, 47), (64, 48)])
def test_the_encoders_are_lossless_at_any_size(fmt, shape):
    import io

    import numpy as np
    from PIL import Image

    from dgqa_data.synth import _encode

    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for arr in (rng.integers(0, 256, (*shape, 3), dtype=np.uint8), np.full((*shape, 3), 255, np.uint8)):
        data = _encode(arr, fmt)
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == fmt.upper() and img.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(img), arr)
        assert _encode(arr, fmt) == data  # deterministic


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_png_deflates_a_photo_losslessly_with_isal_or_stdlib_zlib(deflate, monkeypatch):
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    from dgqa_data import synth

    assert synth._isal is not None  # isal is a dependency: synth runs at its speed
    if deflate == "zlib":
        monkeypatch.setattr(synth, "_isal", None)  # where the isal wheel cannot be installed
    photo = np.ascontiguousarray(data.astronaut()[::2, ::2])
    png = synth._png(photo)
    with Image.open(io.BytesIO(png)) as img:
        np.testing.assert_array_equal(np.asarray(img), photo)
    assert len(png) < 0.8 * photo.nbytes  # it compresses


def test_webp_shards_are_byte_identical_however_split(refs, tmp_path):
    kw = {"types": [2, 13], "levels": [3], "refs_per_shard": 1, "encoding": "webp", "progress": False}
    one = synthesize(refs, tmp_path / "one", **kw)
    for i in range(2):
        synthesize(refs, tmp_path / "split", num_shards=2, shard_index=i, **kw)
    files = sorted(p.name for p in (one / "data").iterdir())
    assert len(files) == 4
    for name in files:
        assert (one / "data" / name).read_bytes() == (tmp_path / "split" / "data" / name).read_bytes()


def test_a_failure_in_the_background_writer_stops_the_run_and_resume_finishes_it(refs, tmp_path, monkeypatch):
    """An encoding error raised in the writer thread reaches the caller; the shards finished before it
    are on disk, and a rerun writes the same bytes as an uninterrupted run."""
    from dgqa_data import synth

    kw = {"types": [4], "levels": [2], "refs_per_shard": 1, "progress": False}
    real = synth._encode
    calls = []

    def failing(arr, encoding):
        calls.append(1)
        if len(calls) == 5:  # the 1st image of the 3rd shard (pristine + one image a reference)
            raise RuntimeError("disk on fire")
        return real(arr, encoding)

    monkeypatch.setattr(synth, "_encode", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        synthesize(refs, tmp_path / "r", **kw)
    done = sorted(p.name for p in (tmp_path / ".r.partial" / "data").glob("*.parquet"))
    assert done == ["train-00000-of-00004.parquet", "train-00001-of-00004.parquet"]
    monkeypatch.setattr(synth, "_encode", real)
    out = synthesize(refs, tmp_path / "r", **kw)
    clean = synthesize(refs, tmp_path / "clean", **kw)
    for f in sorted((clean / "data").iterdir()):
        assert (out / "data" / f.name).read_bytes() == f.read_bytes()


def test_the_distorting_thread_needs_no_datasets():
    """synth's start-up: the modules the distortion loop needs do not import datasets or pyarrow (the
    background writer imports them while the first images are distorted)."""
    import subprocess
    import sys

    code = (
        "import sys; import dgqa_data.synth as s; s._main_thread_imports('severity'); "
        "print(sorted(m for m in ('datasets', 'pyarrow', 'pandas', 'dgqa_data.corpora') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert got.stdout.strip() == "[]"
