"""Nothing outside the corpus root enters a dataset: one rule for every builder (issue 19, section 3).

An image of the official layout that is a symlink resolving outside the corpus root is a bad item:
named in one line (build), or recorded in ``skipped.csv`` and left out (``--skip-bad``); never read.
"""

from __future__ import annotations

import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.corpora.base import Item, get_corpus, list_corpora
from tests.fixtures.bid import make_bid
from tests.fixtures.folder import make_folder
from tests.fixtures.kadis700k import make_kadis700k
from tests.fixtures.koniq10k import make_koniq10k
from tests.fixtures.live_csiq import make_csiq, make_live
from tests.fixtures.livec import make_livec
from tests.fixtures.official import make_kadid10k
from tests.fixtures.pipal import make_pipal
from tests.fixtures.spaq_bid import make_spaq
from tests.fixtures.tid_agiqa import make_agiqa3k, make_tid2013

MAKERS = {
    "agiqa3k": make_agiqa3k,
    "bid": make_bid,
    "csiq": make_csiq,
    "folder": make_folder,
    "kadid10k": lambda root: make_kadid10k(root, n_refs=1, types=(1,), levels=(1, 2)),
    "kadis700k": make_kadis700k,
    "koniq10k": make_koniq10k,
    "live": make_live,
    "livec": make_livec,
    "pipal": make_pipal,
    "spaq": make_spaq,
    "tid2013": lambda root: make_tid2013(root, refs=(1,), types=(1,), levels=(1, 2)),
}


def test_every_builder_is_covered():
    assert sorted(MAKERS) == list_corpora()


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_an_image_symlinked_from_outside_the_root_is_refused(tmp_path, name):
    root = MAKERS[name](tmp_path / "download")
    image = next(e.path for e in get_corpus(name).rows(root) if isinstance(e, Item))
    outside = tmp_path / "secret" / image.name
    outside.parent.mkdir()
    outside.write_bytes(image.read_bytes())  # the same bytes: only where they live is wrong
    image.unlink()
    image.symlink_to(outside)
    with pytest.raises(BuildError, match=rf"escapes the corpus root \(a symlink to {outside}\)"):
        build_corpus(name, root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_skip_bad_records_the_symlink_and_leaves_the_image_out(tmp_path):
    root = make_live(tmp_path / "live")
    first = next(e for e in get_corpus("live").rows(root) if isinstance(e, Item) and e.config == "default")
    outside = tmp_path / "elsewhere.bmp"
    outside.write_bytes(first.path.read_bytes())
    first.path.unlink()
    first.path.symlink_to(outside)
    report = build_corpus("live", root, tmp_path / "out", progress=False, skip_bad=True)
    assert [(s.image_id, s.reason) for s in report.skipped] == [
        (first.row["image_id"], f"path {first.row['image_id']!r} escapes the corpus root (a symlink to {outside})")
    ]
    assert first.row["image_id"] in (tmp_path / "out" / "skipped.csv").read_text()


def test_synth_takes_no_photo_from_outside_its_source(tmp_path):
    from dgqa_data.corpora.base import CorpusError
    from dgqa_data.synth import synthesize
    from tests.fixtures.official import encode, reference_crops

    source = tmp_path / "photos"
    source.mkdir()
    (source / "a.png").write_bytes(encode(reference_crops()[0], "PNG"))
    outside = tmp_path / "private.png"
    outside.write_bytes(encode(reference_crops()[1], "PNG"))
    (source / "b.png").symlink_to(outside)
    with pytest.raises(CorpusError) as err:
        synthesize(source, tmp_path / "out", types=[1], levels=[1], progress=False)
    assert str(err.value) == f"synth source {source}: path 'b.png' escapes the corpus root (a symlink to {outside})"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "private.png"]
