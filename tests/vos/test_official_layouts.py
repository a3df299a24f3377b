"""Every official key list (third_party/keys) converts strictly into its variant."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from models.shared.video_swin import relative_position_index
from vos.convert import load_official
from vos.deaot import build_network
from vos.variants import get_variant

KEYS = Path(__file__).resolve().parents[2] / "third_party" / "keys"
LISTS = {
    "aotl": "aot_keys_aotl.txt",
    "deaotl": "aot_keys_deaotl.txt",
    "r50_aotl": "aot_keys_r50_aotl.txt",
    "r50_deaotl": "aot_keys_r50_deaotl.txt",
    "swinb_aotl": "aot_keys_swinb_aotl.txt",
    "swinb_deaotl": "aot_keys_swinb_deaotl.txt",
}
LINE = re.compile(r"^(\S+) \(([\d, ]*)\) (\w+)$")


def official_zeros(path: Path) -> dict[str, torch.Tensor]:
    state = {}
    for line in path.read_text().splitlines():
        match = LINE.match(line.strip())
        assert match, line
        name, shape, dtype = match.groups()
        dims = tuple(int(d) for d in shape.replace(" ", "").split(",") if d)
        state[name] = torch.zeros(dims, dtype=getattr(torch, dtype))
        if name.endswith("relative_position_index"):  # derived; the converter checks it
            window = round(dims[0] ** 0.5)
            state[name] = relative_position_index((1, window, window))
    return state


@pytest.mark.parametrize("variant", sorted(LISTS))
def test_official_key_list_loads_strictly(variant: str) -> None:
    path = KEYS / LISTS[variant]
    state = official_zeros(path)
    report = load_official(build_network(get_variant(variant)), state, what=variant)
    assert len(report.loaded) + len(report.skipped) == len(state)
    derived = {k for k in report.skipped if k.endswith("relative_position_index")}
    assert set(report.skipped) - derived <= {"LSTT.mask_token"}
    assert len(derived) == sum(k.endswith("relative_position_index") for k in state)


@pytest.mark.parametrize("variant", ["aott", "aotl", "deaots"])
def test_official_mobilenet_variants_run_a_session(variant: str) -> None:
    from tests.vos.conftest import synthetic_video
    from vos.session import Propagator

    torch.manual_seed(0)
    network = build_network(get_variant(variant)).eval()
    frames, labels = synthetic_video(frames=3)
    session = Propagator(network).new_session()
    session.add_reference(frames[0], labels[0])
    for frame in frames[1:]:
        result = session.step(frame)["main"]
    assert result.probs.shape == (3, 49, 65)
    assert torch.allclose(result.probs.sum(0), torch.ones(49, 65), atol=1e-5)
