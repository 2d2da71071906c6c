"""TID2013: 25 references x 24 distortion types x 5 levels, MOS on a 0-9 scale (full reference).

The 24 TID2013 types are kept as their own label (``tid2013_type`` and the ``domain``
``tid2013/<type name>``); ``distortion_type`` is the nearest KADID-10k type where one exists
(:data:`TID_TO_KADID`), else -1. TID levels 1..5 are TID's own and are not KADID's levels.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import datasets

from dgqa_data.corpora.base import Corpus, CorpusError, Item, Skip, parse_score, read_text, register, require
from dgqa_data.schema import DISTORTION_NAMES, UNKNOWN_TYPE, domain_of

NAMES_FILE, MOS_FILE, STD_FILE = "mos_with_names.txt", "mos.txt", "mos_std.txt"
REF_DIR, DIST_DIR = "reference_images", "distorted_images"
#: ``iXX_YY_Z.bmp`` = reference XX, type YY (01-24), level Z (1-5); case varies between copies.
NAME_RE = re.compile(r"^i(\d{2})_(\d{2})_(\d)\.bmp$", re.IGNORECASE)
REF_RE = re.compile(r"^i(\d{2})\.bmp$", re.IGNORECASE)
#: ``mos.txt`` repeats the MOS of ``mos_with_names.txt``; the two must agree to this tolerance.
MOS_TOLERANCE = 5e-4

#: TID2013 type id -> snake-case name (the names ARNIQA uses; ids as in the TID2013 paper).
TID_TYPES: dict[int, str] = {
    1: "additive_gaussian_noise",
    2: "intensive_color_noise",
    3: "spatially_correlated_noise",
    4: "masked_noise",
    5: "high_frequency_noise",
    6: "impulse_noise",
    7: "quantization_noise",
    8: "gaussian_blur",
    9: "image_denoising",
    10: "jpeg_compression",
    11: "jpeg2000_compression",
    12: "jpeg_transmission_errors",
    13: "jpeg2000_transmission_errors",
    14: "non_eccentricity_pattern_noise",
    15: "local_blockwise_distortions",
    16: "mean_shift",
    17: "contrast_change",
    18: "color_saturation_change",
    19: "multiplicative_gaussian_noise",
    20: "comfort_noise",
    21: "lossy_compression_noisy_images",
    22: "color_quantization_with_dither",
    23: "chromatic_aberrations",
    24: "sparse_sampling_reconstruction",
}

#: TID2013 type id -> (nearest KADID-10k type id or -1, why). The card repeats this table.
TID_TO_KADID: dict[int, tuple[int, str]] = {
    1: (11, "additive white Gaussian noise, as KADID white noise"),
    2: (12, "noise stronger in the colour components than in luminance, as KADID's YCbCr-component noise"),
    3: (11, "additive Gaussian noise, but spatially correlated (KADID's is white); nearest noise type"),
    4: (11, "additive noise whose strength follows local activity (masking); nearest is white noise"),
    5: (11, "additive high-pass (high-frequency) noise; nearest is white noise"),
    6: (13, "salt-and-pepper impulse noise, as KADID impulse noise"),
    7: (22, "pixel values quantized to few levels (false contours), as KADID quantization"),
    8: (1, "Gaussian blur, same operator"),
    9: (15, "residual artefacts of denoising a noisy image, as KADID denoise"),
    10: (10, "JPEG compression, same codec"),
    11: (9, "JPEG2000 compression, same codec"),
    12: (-1, "errors in transmitting a JPEG stream; KADID has no transmission errors"),
    13: (-1, "errors in transmitting a JPEG2000 stream; KADID has no transmission errors"),
    14: (20, "patches copied to nearby positions, the model of KADID non-eccentricity patch"),
    15: (23, "blocks of constant colour pasted into the image, as KADID color block"),
    16: (18, "global intensity (mean) shift, as KADID mean shift"),
    17: (25, "global contrast change, as KADID contrast change"),
    18: (7, "saturation change; KADID splits it into 7 (HSV, less) and 8 (Lab, more): the first is used"),
    19: (14, "noise proportional to the signal, as KADID multiplicative noise (KADID's is uniform)"),
    20: (-1, "lossy coding that replaces texture by synthesised (comfort) noise; no KADID counterpart"),
    21: (-1, "noise plus compression artefacts together; no single KADID type"),
    22: (6, "colour quantization with dithering, as KADID color quantization (dithered in MATLAB)"),
    23: (
        -1,
        "colour channels misaligned and blurred (lens model); KADID color shift moves green near edges only",
    ),
    24: (-1, "image reconstructed from sparse samples; no KADID counterpart"),
}
#: TID2013 types with no KADID counterpart (``distortion_type`` -1).
UNMAPPED = tuple(t for t, (k, _) in TID_TO_KADID.items() if k == UNKNOWN_TYPE)


def tid_domain(tid_type: int) -> str:
    """Selection domain of a TID2013 type: ``tid2013/<type name>``."""
    return f"tid2013/{TID_TYPES[tid_type]}"


def mapping_rows() -> list[tuple[str, str, str, str]]:
    """The mapping as table cells: TID id, TID name, KADID type (``name (id)`` or ``-1``), reason."""
    cells = []
    for t, (k, why) in TID_TO_KADID.items():
        kadid = f"{DISTORTION_NAMES[k]} ({k})" if k >= 0 else "-1 (none)"
        cells.append((f"{t:02d}", TID_TYPES[t], kadid, why))
    return cells


def _index(folder: Path) -> tuple[dict[str, Path], list[Skip]]:
    """lower-case name -> path of the files in ``folder``; names equal up to case are a :class:`Skip`."""
    index: dict[str, Path] = {}
    clashes = []
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if name.startswith(".") or not path.is_file():
            continue
        key = name.lower()
        if key in index:
            first = index[key].name
            clashes.append(Skip(name, f"{folder.name}/{name}", f"same name as {first} up to case"))
            continue
        index[key] = path
    return index, clashes


def _lines(path: Path) -> list[str]:
    """The lines of a label file, trailing blank lines dropped (line k is ``lines[k - 1]``)."""
    return read_text(path).rstrip().splitlines()


def _row(name: str, ref: str, mos, std, kadid: int, tid_type, level: int, where: str) -> dict:
    return {
        "image_id": name,
        "reference_id": ref,
        "mos": mos,
        "mos_std": std,
        "quality": TID2013.quality(mos),
        "distortion_type": kadid,
        "distortion_level": level,
        "domain": tid_domain(tid_type) if tid_type is not None else domain_of(kadid),
        "corpus": "tid2013",
        "tid2013_type": tid_type,
        "_where": where,
    }


@functools.cache  # the build reads the rows twice; the note is said once
def _order_check_skipped(mos_file: Path) -> None:
    print(
        f"note: {mos_file} is absent (it is optional): the check that {NAMES_FILE} lists the images "
        f"in the official order (its MOS line by line against {MOS_FILE}) was skipped",
        file=sys.stderr,
    )


def rows(root: Path) -> Iterator[Item | Skip]:
    """Scored images in ``mos_with_names.txt`` order (config ``default``), then their references
    (config ``pristine``). File names are matched case-insensitively; ``image_id`` keeps the name as
    ``mos_with_names.txt`` spells it, ``reference_id`` the reference's name on disk."""
    names_file = require(root / NAMES_FILE, f"TID2013 label file {NAMES_FILE}")
    std_file = require(root / STD_FILE, f"TID2013 label file {STD_FILE}")
    refs = require(root / REF_DIR, f"TID2013 reference folder {REF_DIR}/")
    dists = require(root / DIST_DIR, f"TID2013 image folder {DIST_DIR}/")
    lines, stds = _lines(names_file), _lines(std_file)
    mos_lines = _lines(root / MOS_FILE) if (root / MOS_FILE).exists() else None
    if mos_lines is None:
        _order_check_skipped(root / MOS_FILE)
    counts = {NAMES_FILE: len(lines), STD_FILE: len(stds)}
    if mos_lines is not None:
        counts[MOS_FILE] = len(mos_lines)
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{f} has {n}" for f, n in counts.items())
        raise CorpusError(
            f"{root}: the TID2013 label files disagree in length ({listed} lines); they list the "
            "same images in the same order, one per line"
        )
    ref_index, ref_clashes = _index(refs)
    dist_index, dist_clashes = _index(dists)
    yield from ref_clashes
    yield from dist_clashes
    used_refs: dict[int, tuple[str, Path, str]] = {}
    for line_no, line in enumerate(lines, start=1):
        where = f"{NAMES_FILE} line {line_no}"
        fields = line.split()
        if len(fields) != 2:
            yield Skip(line.strip(), where, f"expected '<MOS> <image name>', got {line.strip()!r}")
            continue
        value, name = fields
        m = NAME_RE.match(name)
        if m is None:
            yield Skip(name, where, "name does not match iXX_YY_Z.bmp (reference, type, level)")
            continue
        ref_no, tid_type, level = (int(g) for g in m.groups())
        if not (1 <= tid_type <= 24 and 1 <= level <= 5):
            yield Skip(name, where, f"distortion type {tid_type} / level {level} outside 1..24 / 1..5")
            continue
        mos = parse_score(value, name, where, "MOS")
        if isinstance(mos, Skip):
            yield mos
            continue
        if mos_lines is not None:
            other = parse_score(mos_lines[line_no - 1].strip(), name, f"{MOS_FILE} line {line_no}", "MOS")
            if isinstance(other, Skip):
                yield other
                continue
            if abs(other - mos) > MOS_TOLERANCE:
                yield Skip(
                    name,
                    where,
                    f"MOS {value} differs from {MOS_FILE} line {line_no} ({other:g}): "
                    "the label files are not in the same order",
                )
                continue
        std = parse_score(stds[line_no - 1].strip(), name, f"{STD_FILE} line {line_no}", "MOS std")
        if isinstance(std, Skip):
            yield std
            continue
        if std < 0:
            yield Skip(name, f"{STD_FILE} line {line_no}", f"MOS std {std:g} is negative")
            continue
        ref_key = f"i{ref_no:02d}.bmp"
        ref_path = ref_index.get(ref_key)
        if ref_path is None:
            yield Skip(name, where, f"its reference I{ref_no:02d}.BMP (any case) is missing from {REF_DIR}/")
            continue
        path = dist_index.get(name.lower())
        if path is None:
            yield Skip(name, where, f"listed image is missing from {DIST_DIR}/ (matched ignoring case)")
            continue
        used_refs.setdefault(ref_no, (ref_path.name, ref_path, where))
        kadid = TID_TO_KADID[tid_type][0]
        yield Item(_row(name, ref_path.name, mos, std, kadid, tid_type, level, where), path)
    for ref_no in sorted(used_refs):
        ref_name, ref_path, where = used_refs[ref_no]
        row = _row(
            ref_name, ref_name, None, None, 0, None, 0, f"{REF_DIR}/{ref_name} (first used at {where})"
        )
        yield Item(row, ref_path, config="pristine")


TID2013 = register(
    Corpus(
        name="tid2013",
        aliases=("tid-2013",),
        pretty_name="TID2013",
        kind="FR, synthetic",
        size="3,000 (25 references)",
        score_name="MOS on a 0-9 scale from pairwise comparisons (higher = better; observed 0.24-7.21)",
        score_range=(0.0, 9.0),
        higher_is_better=True,
        license="other",
        license_note=(
            "The TID2013 licence text was not retrieved. Its predecessor TID2008 is licensed for "
            "educational and research purposes only and without fee, and may not be modified without "
            "the authors' permission. dgqa applies the same terms to TID2013: research use only, images "
            "not redistributable (publish index-only builds: paths + sha256), cite the paper below."
        ),
        redistributable=False,
        citation="""@article{ponomarenko2015tid2013,
  title={Image database {TID2013}: Peculiarities, results and perspectives},
  author={Ponomarenko, Nikolay and Jin, Lina and Ieremeiev, Oleg and Lukin, Vladimir and Egiazarian, Karen and Astola, Jaakko and Vozel, Benoit and Chehdi, Kacem and Carli, Marco and Battisti, Federica and Kuo, C.-C. Jay},
  journal={Signal Processing: Image Communication},
  volume={30},
  pages={57--77},
  year={2015}
}""",
        homepage="http://www.ponomarenko.info/tid2013.htm",
        splits=(
            "No official split. `default` holds the 3,000 distorted images as `train`; the config "
            "`pristine` holds the 25 references (distortion_type 0). Split by `reference_id` (120 "
            "images per reference): published protocols use 80/20 by reference (20/5), 10 repeats."
        ),
        layout=(
            "tid2013/mos_with_names.txt (lines '5.51429 i01_01_1.bmp') + mos.txt + mos_std.txt (one value "
            "a line, same order) + reference_images/ (I01.BMP .. I24.BMP, i25.bmp) + distorted_images/ "
            "(iXX_YY_Z.bmp, case varies)"
        ),
        rows=rows,
        extra_features={"tid2013_type": datasets.Value("int8")},
        image_format="bmp",
    )
)
