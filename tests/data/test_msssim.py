"""MS-SSIM (dgqa_data.msssim) and the pseudo-MOS labels of `dgqa synth --labels ms-ssim`, torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from dgqa_data.camera import pseudo_mos
from dgqa_data.errors import DgqaError
from dgqa_data.msssim import MS_SSIM_WEIGHTS, gaussian_window, ms_ssim

#: pseudo_mos's scale weights: the first three of the paper's five, renormalised.
W3 = [w / 0.6305 for w in MS_SSIM_WEIGHTS[:3]]


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def _distort(ref: np.ndarray, kind: str) -> np.ndarray:
    """Deterministic distortions (no random numbers, no codec): blur, darken, a fixed noise pattern."""
    x = ref.astype(np.float64)
    if kind == "blur":
        size = (5, 5, 1) if x.ndim == 3 else 5
        x = uniform_filter(x, size=size, mode="reflect")
    elif kind == "dark":
        x = x * 0.55
    else:
        h, w = x.shape[:2]
        pattern = (np.arange(h)[:, None] * 37 + np.arange(w)[None, :] * 11) % 31 - 15.0
        x = x + (pattern[..., None] if x.ndim == 3 else pattern) * 1.5
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, distorted, reference): colour crops with even and odd sides, a small crop, a grey photo."""
    out = []
    crops = {
        "astronaut-384x512": _photo("astronaut")[:384, :512],
        "coffee-201x263": _photo("coffee")[50:251, 100:363],
        "chelsea-40x52": _photo("chelsea")[100:140, 150:202],
        "camera-193x256": _photo("camera")[60:253, 128:384],  # grey (H, W)
    }
    for name, ref in crops.items():
        ref = np.ascontiguousarray(ref)
        for kind in ("blur", "dark", "pattern"):
            out.append((f"{name}-{kind}", _distort(ref, kind), ref))
    return out


def _window(shape: tuple[int, ...]) -> int:
    win = min(11, (min(shape[:2]) - 1) // 16 + 1)
    return win - (1 - win % 2)


#: MS-SSIM of :func:`cases` as the torch implementation used before (pytorch_msssim 1.0, float32)
#: computed it: 3 scales with pseudo_mos's window, and the standard 5 scales where the image allows.
EXPECTED = {
    "astronaut-384x512-blur": (0.95748430, 0.97253996),
    "astronaut-384x512-dark": (0.83067805, 0.86200380),
    "astronaut-384x512-pattern": (0.89489239, 0.94106936),
    "coffee-201x263-blur": (0.95759553, 0.97267103),
    "coffee-201x263-dark": (0.83659345, 0.86781579),
    "coffee-201x263-pattern": (0.88511366, 0.92633981),
    "chelsea-40x52-blur": (0.93895799, None),
    "chelsea-40x52-dark": (0.82212168, None),
    "chelsea-40x52-pattern": (0.90165138, None),
    "camera-193x256-blur": (0.94440192, 0.96388447),
    "camera-193x256-dark": (0.82621992, 0.86012352),
    "camera-193x256-pattern": (0.90267545, 0.93745893),
}


def test_ms_ssim_matches_the_recorded_values():
    for label, dist, ref in cases():
        three, five = EXPECTED[label]
        assert ms_ssim(dist, ref, weights=W3, win_size=_window(ref.shape)) == pytest.approx(
            three, abs=1e-5
        ), label
        if five is not None:
            assert ms_ssim(dist, ref) == pytest.approx(five, abs=1e-5), label


def test_ms_ssim_matches_pytorch_msssim():
    """The reference: pytorch_msssim (Wang et al. 2003 as commonly implemented), in float64, when installed."""
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("pytorch_msssim")

    def t(a: np.ndarray):
        a = a if a.ndim == 3 else a[..., None]
        return torch.from_numpy(np.array(a, dtype=np.float64)).permute(2, 0, 1)[None]

    for label, dist, ref in cases():
        win = _window(ref.shape)
        want = float(reference.ms_ssim(t(dist), t(ref), data_range=255, weights=W3, win_size=win))
        assert ms_ssim(dist, ref, weights=W3, win_size=win) == pytest.approx(want, abs=1e-5), label
        if min(ref.shape[:2]) > 160:
            want = float(reference.ms_ssim(t(dist), t(ref), data_range=255))
            assert ms_ssim(dist, ref) == pytest.approx(want, abs=1e-5), label


def test_ms_ssim_properties_and_errors():
    label, dist, ref = cases()[0]
    assert ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(dist, ref) == pytest.approx(ms_ssim(ref, dist), abs=1e-12)
    assert ms_ssim(dist.astype(np.float32), ref) == ms_ssim(dist, ref)
    assert gaussian_window(11).sum() == pytest.approx(1.0, abs=1e-15) and gaussian_window(11).argmax() == 5
    with pytest.raises(DgqaError, match="one shape"):
        ms_ssim(dist[:100], ref)
    with pytest.raises(DgqaError, match="odd window"):
        ms_ssim(dist, ref, win_size=10)
    with pytest.raises(DgqaError, match="coarsest scale"):
        ms_ssim(dist[:150, :150], ref[:150, :150])  # 5 scales: 150 -> 10 px < 11


def test_pseudo_mos_maps_ms_ssim_to_1_5():
    for label, dist, ref in cases():
        if ref.ndim == 2:
            continue
        want = 1 + 4 * np.clip((EXPECTED[label][0] - 0.4) / 0.6, 0, 1)
        assert pseudo_mos(dist, ref) == pytest.approx(want, abs=1e-4), label  # 1e-5 of MS-SSIM, x 4 / 0.6
    ref = cases()[0][2]
    assert pseudo_mos(ref, ref) == pytest.approx(5.0)
    with pytest.raises(DgqaError, match="at least 33 px"):
        pseudo_mos(ref[:32, :40], ref[:32, :40])


SYNTH = """
import runpy, sys, json
sys.argv = ["dgqa_data", *json.loads(sys.argv[1])]
try:
    runpy.run_module("dgqa_data", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("torch", "pytorch_msssim") if m in sys.modules)
print("HEAVY", json.dumps(heavy))
sys.exit(code)
"""


def test_synth_ms_ssim_labels_do_not_import_torch(tmp_path):
    from PIL import Image

    refs = tmp_path / "refs"
    refs.mkdir()
    Image.fromarray(np.ascontiguousarray(_photo("astronaut")[:96, :128])).save(refs / "a.png")
    argv = ["synth", "--source", str(refs), "--out", str(tmp_path / "out"), "--labels", "ms-ssim",
            "--types", "1", "--levels", "1,3"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SYNTH, json.dumps(argv)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY []"
    import pyarrow.parquet as pq

    mos = [
        r["mos"]
        for f in sorted((tmp_path / "out" / "data").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    assert mos and all(1.0 <= m <= 5.0 for m in mos)
