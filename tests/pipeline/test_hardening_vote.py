"""Hardening of ``lsvos vote``: unreachable thresholds, empty or repeated sources, and the
``sigmoid_twice`` rule exact against float32 ``torch.sigmoid(p) > 0.5``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.core.io import encode_mask_png
from pipeline.core.masks import MaskSet, Track
from pipeline.core.vote import (
    SIGMOID_TWICE_THRESHOLD,
    VoteError,
    VoteSpec,
    vote_mask_sets,
    vote_video,
)


def _png_source(root: Path, videos: int = 1, n_exp: int = 2) -> Path:
    rng = np.random.default_rng(len(str(root)))
    for v in range(videos):
        for e in range(n_exp):
            folder = root / "Annotations" / f"vid{v}" / str(e)
            folder.mkdir(parents=True)
            for k in range(2):
                mask = rng.random((4, 5)) < 0.5
                (folder / f"{5 * k:05d}.png").write_bytes(encode_mask_png(mask))
    return root


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["vote", *argv])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# thresholds no pixel can reach


@pytest.mark.parametrize(
    ("kwargs", "available"),
    [
        ({"min_votes": 4}, "3 votes"),
        ({"min_votes": 7, "pairs": True}, "6 votes"),
        ({"min_votes": 3.5, "weights": (1, 1, 1.4)}, "3.4 votes"),
        ({"pairs": True, "min_votes": 6, "odd_min_votes": 4}, "3 votes"),
    ],
)
def test_unreachable_thresholds_are_refused(kwargs: dict, available: str) -> None:
    with pytest.raises(UserError, match=f"more than the {available} available"):
        VoteSpec(("a", "b", "c"), **kwargs)


def test_reachable_thresholds_still_vote() -> None:
    # every vote needed is allowed: pairs of 3 sources reach 6; the lone last one reaches 3
    spec = VoteSpec(("a", "b", "c"), pairs=True, min_votes=6, odd_min_votes=3)
    on = Track(("00000",), np.ones((1, 1, 2), bool))
    out, _ = vote_video([{"0": on, "1": on, "2": on}] * 3, ["0", "1", "2"], spec)
    assert all(out[e].masks.all() for e in "012")
    # odd_min_votes is not used by first_source, nor without pairs: not refused
    VoteSpec(("a", "b"), pairs=True, odd_policy="first_source", odd_min_votes=9)
    VoteSpec(("a", "b"), odd_min_votes=9)


def test_cli_refuses_min_votes_above_the_votes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _png_source(tmp_path / "a"), _png_source(tmp_path / "b")
    out = tmp_path / "out"
    code, err = _cli(capsys, "--out", str(out), "--min-votes", "3", str(a), str(b))
    assert code == 2
    assert err.startswith("lsvos vote: error: min_votes 3 is more than the 2 votes available")
    code, err = _cli(capsys, "--out", str(out), "--pairs", "--min-votes", "5", str(a), str(b))
    assert code == 2 and "min_votes 5 is more than the 4 votes available" in err
    assert "x 2 expressions per pair" in err
    assert not out.exists()
    assert _cli(capsys, "--out", str(out), "--pairs", "--min-votes", "4", str(a), str(b))[0] == 0


# ---------------------------------------------------------------------------------------------
# empty and repeated sources


def test_empty_first_source_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    full = _png_source(tmp_path / "full")
    out = tmp_path / "out"
    code, err = _cli(capsys, "--out", str(out), str(empty), str(full))
    assert code == 2
    assert err.startswith("lsvos vote: error: source 'empty'") and "holds no videos" in err
    assert str(empty.resolve()) in err
    assert not out.exists()
    with pytest.raises(VoteError, match="no videos were asked for"):
        vote_mask_sets([full], tmp_path / "out2", videos=[])


def test_same_source_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _png_source(tmp_path / "a"), _png_source(tmp_path / "b")
    out = tmp_path / "out"
    for second in (a, a / "Annotations", tmp_path / "b" / ".." / "a"):
        code, err = _cli(capsys, "--out", str(out), str(a), str(b), str(second))
        assert code == 2, second
        assert err.startswith("lsvos vote: error: source 'a'") and "given twice" in err
        assert "source 0 and source 2" in err
    assert not out.exists()
    masks = MaskSet(tmp_path / "ms")
    masks.write("vid0", "0", Track(("00000",), np.ones((1, 2, 2), bool)))
    masks.mark_complete("vid0")
    with pytest.raises(
        VoteError, match=r"source 'x' \(.*ms\) is given twice, as source 0 and source 1"
    ):
        vote_mask_sets([masks, MaskSet(tmp_path / "ms")], tmp_path / "o", VoteSpec(("ms", "x")))
    assert _cli(capsys, "--out", str(out), str(a), str(b))[0] == 0


# ---------------------------------------------------------------------------------------------
# sigmoid_twice: float32 sigmoid(p) > 0.5, exactly


def _oracle(values: np.ndarray) -> np.ndarray:
    """The winners' rule: float32 ``torch.sigmoid(p) > 0.5``."""
    torch = pytest.importorskip("torch")
    return (torch.sigmoid(torch.from_numpy(values.astype(np.float32))) > 0.5).numpy()


def _sigmoid_twice(probs: np.ndarray) -> np.ndarray:
    n = probs.size
    probs = probs.reshape(1, 1, n)
    first = Track(("00000",), np.zeros((1, 1, n), bool), None, probs)
    other = Track(("00000",), np.zeros((1, 1, n), bool))
    spec = VoteSpec(("a", "b"), pairs=True, odd_policy="first_source", sigmoid_twice=True)
    out, _ = vote_video([{"0": first}, {"0": other}], ["0"], spec)
    return out["0"].masks.reshape(n)


def test_sigmoid_twice_threshold_is_the_float32_one() -> None:
    t = SIGMOID_TWICE_THRESHOLD
    assert t.dtype == np.float32 and t == np.nextafter(np.float32(1.5 * 2**-24), np.float32(1))
    below = np.nextafter(t, np.float32(0))
    assert _oracle(np.array([t]))[0] and not _oracle(np.array([below]))[0]


def test_sigmoid_twice_matches_torch_on_every_float16() -> None:
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = _sigmoid_twice(every)
    np.testing.assert_array_equal(got, _oracle(every))
    # the band the old rule (p > 0) got wrong: float16 2**-24 is stored, sigmoid is 0.5
    band = np.array([2**-24, 2**-23, 3e-8, 6e-8, 9e-8, 1e-7], np.float16)
    assert band[0] > 0 and band[0] == np.float16(5.96e-8)
    np.testing.assert_array_equal(_sigmoid_twice(band), _oracle(band))
    assert _sigmoid_twice(band).tolist() == [False, True, False, False, True, True]


def test_sigmoid_twice_matches_torch_on_float32_near_the_threshold() -> None:
    t = SIGMOID_TWICE_THRESHOLD
    steps = [t]
    for _ in range(64):
        steps.insert(0, np.nextafter(steps[0], np.float32(0)))
        steps.append(np.nextafter(steps[-1], np.float32(1)))
    band = np.linspace(2.9e-8, 1.2e-7, 4001, dtype=np.float32)
    special = np.array(
        [0, -0.0, -1e-8, 1e-45, 2**-25, 2**-24, 1.5 * 2**-24, 0.5, 1, np.inf, -np.inf, np.nan]
    )
    values = np.concatenate([np.array(steps, np.float32), band, special.astype(np.float32)])
    np.testing.assert_array_equal(_sigmoid_twice(values), _oracle(values))


def test_sigmoid_twice_through_a_stored_float16_mask_set(tmp_path: Path) -> None:
    probs = np.array([[[2**-24, 2**-23, 0.0, 0.7]]], np.float16)
    stored = MaskSet(tmp_path / "soft")
    stored.write("v", "0", Track(("00000",), probs > 0.5, None, probs))
    stored.mark_complete("v")
    hard = MaskSet(tmp_path / "hard")
    hard.write("v", "0", Track(("00000",), np.zeros((1, 1, 4), bool)))
    hard.mark_complete("v")
    assert stored.read("v", "0").probs.dtype == np.float16
    spec = VoteSpec(("soft", "hard"), pairs=True, odd_policy="first_source", sigmoid_twice=True)
    vote_mask_sets([stored, hard], tmp_path / "out", spec)
    got = MaskSet(tmp_path / "out").read("v", "0").masks
    assert got[0, 0].tolist() == [False, True, False, True] == _oracle(probs[0, 0]).tolist()
