"""Corpus declarations: what a builder needs to know about one IQA corpus, and its registry."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

# CorpusError, Skip and safe_path live in modules that synth imports without datasets; re-exported here
from dgqa_data.errors import CorpusError, DgqaError  # noqa: F401
from dgqa_data.paths import Skip, safe_path  # noqa: F401
from dgqa_data.schema import to_quality


@dataclass
class Item:
    """One image to write: its row (unified schema minus ``image``) and where its bytes are."""

    row: dict[str, Any]
    path: Path
    split: str = "train"
    config: str = "default"


@dataclass(frozen=True)
class Corpus:
    """Declaration of one IQA corpus.

    Attributes:
        name: registry name, also the dataset folder name (``dgqa/<name>``).
        pretty_name: human name used in cards.
        score_name: what ``mos`` holds, e.g. ``"MOS, 1-5 ACR"``.
        score_range: declared range of ``mos`` on the corpus' own scale.
        higher_is_better: direction of ``mos``.
        license: Hub licence id (``"other"`` when there is no formal licence).
        license_note: the terms as published.
        redistributable: whether the images may be re-published (else index-only by default).
        citation: BibTeX of the paper to cite.
        homepage: official download page.
        splits: how splits are defined (card text).
        layout: the official layout (card text).
        rows: ``rows(root, **options)`` yields :class:`Item` or :class:`Skip` in a stable order.
        extra_features: corpus-specific columns beyond the unified schema.
        aliases: other accepted names.
        image_format: how images are shipped (``"png"``, ``"jpeg"``, ``"bmp"``, ``"mixed"``).
        configure: optional ``configure(corpus, **options) -> Corpus`` used by :meth:`for_build`.
        card_template: card template in ``dataset_cards/`` (default: ``name``).
        bounded_scale: whether ``score_range`` bounds every score (a rating scale); False for open
            scales such as Elo, whose range is only what was observed.
        kind: what the corpus is, for the corpus table: ``"FR, synthetic"`` (full-reference: distorted
            copies of reference images), ``"NR, authentic"`` (no reference), ...
        size: how many images, for the corpus table.
        official_split: the split the authors published, if any (as HF splits of the build).
        transform: applied by the build to every image's bytes, in its read workers, before they are
            stored (e.g. SPAQ's resized variant); picklable (a module function or a ``partial`` of
            one); an ``OSError``/``ValueError`` it raises makes the image a bad item. None: bytes
            are stored as shipped.
    """

    name: str
    pretty_name: str
    score_name: str
    score_range: tuple[float, float] | None
    higher_is_better: bool
    license: str
    license_note: str
    redistributable: bool
    citation: str
    homepage: str
    splits: str
    layout: str
    rows: Callable[..., Iterator[Item | Skip]]
    extra_features: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    image_format: str = "mixed"
    configure: Callable[..., Corpus] | None = None
    card_template: str = ""
    bounded_scale: bool = True
    kind: str = ""
    size: str = ""
    official_split: str = ""
    transform: Callable[[bytes], bytes] | None = None

    def score_problem(self, row: dict[str, Any]) -> str | None:
        """Why a row's ``mos`` is impossible on this corpus' declared scale, or None."""
        mos = row.get("mos")
        if mos is None or self.score_range is None or not self.bounded_scale:
            return None
        lo, hi = self.score_range
        if not lo <= float(mos) <= hi:
            return f"mos {float(mos):g} is outside the declared scale {lo:g}..{hi:g} of {self.name}"
        return None

    def for_build(self, **options: Any) -> Corpus:
        """The declaration one build uses: a corpus whose name or scale comes from the build options
        (``folder``) derives it here through ``configure(corpus, **options)``; others are unchanged."""
        return self.configure(self, **options) if self.configure is not None else self

    def quality(self, mos: float | None) -> float | None:
        """``mos`` mapped to [0, 1], higher = better."""
        if self.score_range is None:
            return None
        return to_quality(mos, *self.score_range, self.higher_is_better)

    def features(self, index_only: bool = False) -> datasets.Features:
        """Unified features plus this corpus' extra columns."""
        from dgqa_data.schema import base_features

        feats = base_features(index_only)
        feats.update(self.extra_features)
        return feats


def pristine_item(reference: str, path: Path, corpus: str, where: str) -> Item:
    """The row of a reference image (config ``pristine``: distortion type 0, no score)."""
    from dgqa_data.schema import domain_of

    row = {
        "image_id": reference,
        "reference_id": reference,
        "mos": None,
        "mos_std": None,
        "quality": None,
        "distortion_type": 0,
        "distortion_level": 0,
        "domain": domain_of(0),
        "corpus": corpus,
        "_where": where,
    }
    return Item(row, path, config="pristine")


_REGISTRY: dict[str, Corpus] = {}


def register(corpus: Corpus) -> Corpus:
    """Add a corpus to the registry under its name and aliases."""
    for key in (corpus.name, *corpus.aliases):
        _REGISTRY[key.lower()] = corpus
    return corpus


def get_corpus(name: str) -> Corpus:
    """Look a corpus up by name or alias; unknown names list the known ones."""
    import dgqa_data.corpora  # noqa: F401  (registers the built-in corpora)

    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise CorpusError(f"unknown corpus {name!r}; known corpora: {', '.join(list_corpora())}") from None


def find_corpus(name: str) -> Corpus | None:
    """The registered corpus ``name`` (or alias), or None: a synthetic set or a ``folder`` build of
    one's own photos names no registered corpus."""
    try:
        return get_corpus(name)
    except CorpusError:
        return None


def list_corpora() -> list[str]:
    """Registered corpus names (aliases excluded)."""
    return sorted({c.name for c in _REGISTRY.values()})


def blank_cell(value: Any) -> bool:
    """A label-table cell that holds nothing (None or only spaces)."""
    return value is None or (isinstance(value, str) and not value.strip())


def whole_number(value: Any) -> int | None:
    """A cell holding a whole number (``3``, ``3.0``, ``"3"``), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def parse_score(value: Any, image_id: str, where: str, column: str) -> float | Skip:
    """Parse a score cell; non-numeric or NaN gives a :class:`Skip` naming the row and column."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return Skip(image_id, where, f"{column} {value!r} is not a number")
    if score != score or score in (float("inf"), float("-inf")):
        return Skip(image_id, where, f"{column} is {value!r}, not a finite number")
    return score


def parse_bool(value: Any, option: str) -> bool:
    """A boolean build option given as a bool or as text (``true/false``, ``yes/no``, ``1/0``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise CorpusError(f"option {option}={value!r}: expected true or false")


def require(path: Path, what: str) -> Path:
    """Raise a clear :class:`CorpusError` when an official file or folder is missing."""
    if not path.exists():
        raise CorpusError(f"missing {what}: {path} does not exist")
    return path


def read_text(path: Path) -> str:
    """A label or metadata file as text: UTF-8 (a byte-order mark is dropped); a file in another
    encoding (e.g. Latin-1 names) is one :class:`CorpusError` naming the file and the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise CorpusError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None


def read_csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV with a header, numbered as lines of the file; checks required columns."""
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(
                f"{path}: missing column(s) {', '.join(missing)}; header is {reader.fieldnames}"
            )
        yield from enumerate(reader, start=2)
