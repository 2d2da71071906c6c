"""Severity labels: one scale for KADID-style images and simulated camera captures."""

import numpy as np
import pytest

from dgqa_data.camera import simulate_capture
from dgqa_data.severity import (
    CAMERA_ANCHORS,
    camera_severity,
    capture_quality,
    quality_from_severities,
    quality_to_mos,
    synthetic_quality,
    type_severity,
)


def test_type_severity_follows_level_except_identity_and_non_monotone_levels():
    assert [type_severity(1, lv) for lv in range(1, 6)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert type_severity(3, 1) == 0.0  # motion blur of length 1 is the identity
    assert type_severity(18, 3) == 0.0  # mean shift of 0
    assert type_severity(18, 1) == type_severity(18, 5)  # +-0.15 are equally severe
    assert type_severity(0, 0) == 0.0
    with pytest.raises(ValueError, match="type 26 level 1"):
        type_severity(26, 1)


def test_synthetic_quality_and_mos_scale():
    assert synthetic_quality(0, 0) == 1.0
    assert synthetic_quality(10, 5) == pytest.approx(0.2)
    assert synthetic_quality(10, 1) == pytest.approx(0.84)
    assert quality_to_mos(synthetic_quality(10, 5)) == pytest.approx(1.8)


def test_camera_steps_sit_on_the_level_scale_of_their_kadid_type():
    # at the official level values the camera step has exactly that level's severity
    assert camera_severity("defocus_radius", 4.0) == pytest.approx(type_severity(2, 3))
    assert camera_severity("shake_length", 1.0) == 0.0
    assert camera_severity("shake_length", 6.0) == pytest.approx(type_severity(3, 4))
    assert camera_severity("noise_rms", 0.1) == pytest.approx(1.0)
    assert camera_severity("jpeg_quality", 100) == 0.0
    assert camera_severity("jpeg_quality", 24) == pytest.approx(0.6)
    assert camera_severity("jpeg_quality", 1) == 1.0  # past level 5
    assert camera_severity("defocus_radius", 3.0) == pytest.approx(0.5)  # halfway between levels 2 and 3
    assert set(CAMERA_ANCHORS) >= {"brighter_stops", "darker_stops"}
    with pytest.raises(ValueError, match="unknown camera step 'blur'"):
        camera_severity("blur", 1.0)


def test_quality_multiplies_over_degradations():
    assert quality_from_severities([]) == 1.0
    assert quality_from_severities([1.0, 0.5]) == pytest.approx(0.2 * 0.6)
    assert capture_quality({"jpeg_quality": 24, "noise_rms": 0.1, "shake_angle": 30.0}) == pytest.approx(
        (1 - 0.8 * 0.6) * 0.2
    )


def test_simulated_capture_records_measured_strengths(photos):
    image = photos[0]
    seen = set()
    for seed in range(40):
        cap = simulate_capture(image, seed)
        assert cap.image.shape == image.shape and cap.image.dtype == np.uint8
        assert 50 <= cap.steps["jpeg_quality"] <= 95
        assert ("noise_sigma" in cap.steps) == ("noise_rms" in cap.steps)
        if "exposure_ev" in cap.steps:
            stops = cap.steps.get("brighter_stops", cap.steps.get("darker_stops"))
            assert stops is not None and stops >= 0
            assert ("brighter_stops" in cap.steps) == (cap.steps["exposure_ev"] > 0)
        assert 0.0 < cap.quality <= 1.0
        assert cap.quality == pytest.approx(capture_quality(cap.steps))
        seen |= set(cap.steps)
    assert {"defocus_radius", "shake_length", "exposure_ev", "noise_sigma"} <= seen
    assert simulate_capture(image, 3).steps == simulate_capture(image, 3).steps
