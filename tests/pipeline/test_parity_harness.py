"""The parity harness itself: comparison rules and case reading."""

from __future__ import annotations

import numpy as np

from pipeline.adapters.parity import compare


def test_tolerance_rule() -> None:
    e = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    assert compare("x", e + 1e-5, e, {"atol": 1e-4, "rtol": 0}).passed
    res = compare("x", e + np.array([0, 0, 1e-3]), e, {"atol": 1e-4, "rtol": 0})
    assert not res.passed and "(2,)" in res.detail
    assert compare("x", e * (1 + 1e-5), e, {"atol": 0, "rtol": 1e-4}).passed
    assert not compare("x", np.array([1.0, np.nan, 3.0]), e, {"atol": 1, "rtol": 1}).passed


def test_exact_and_shape_rules() -> None:
    e = np.array([3.0], dtype=np.float32)
    assert compare("q", np.array(3), e, {"exact": True}).passed
    assert not compare("q", np.array([2]), e, {"exact": True}).passed
    assert not compare("q", np.zeros((2, 2)), e, {"exact": True}).passed
    assert not compare("q", None, e, {"exact": True}).passed


def test_min_agreement_is_per_frame() -> None:
    e = np.zeros((2, 10, 10), dtype=np.float32)
    a = e.copy()
    a[1, :2, :] = 1  # frame 1 agrees on 80 %; the mean over frames is 90 %
    assert not compare("m", a, e, {"min_agreement": 0.85}).passed
    assert compare("m", a, e, {"min_agreement": 0.8}).passed
