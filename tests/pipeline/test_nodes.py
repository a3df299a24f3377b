"""Per-(node, video) work without Prefect: imports, key frames, atomicity of failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import UserError
from pipeline.core.masks import MaskSet, Track
from pipeline.orchestration.config import compose_config
from pipeline.orchestration.nodes.propagate import key_frames_of
from pipeline.orchestration.nodes.run import run_node_video
from pipeline.orchestration.prepare import prepare_run
from tests.pipeline.flow_fixtures import demo_with_imports


@pytest.fixture()
def plan(tmp_path: Path):
    return prepare_run(compose_config(demo_with_imports(tmp_path, videos=1)), nodes=["v1"])


def test_import_and_vote_write_complete_videos(plan) -> None:
    video = plan.videos[0]
    for job in plan.jobs:
        record = run_node_video(job, video)
        assert record["status"] == "computed"
        assert MaskSet(job.out_dir).is_complete(video)
    vote = MaskSet(plan.job("v1").out_dir)
    # the vote follows the split's expression order and records key frames from SOC's scores
    soc = MaskSet(plan.job("soc").out_dir)
    assert vote.expressions(video) == soc.expressions(video)
    keys = vote.key_frames(video)
    for exp in soc.expressions(video):
        assert keys[exp] == int(np.argmax(soc.read(video, exp).scores))


def test_import_lacking_an_expression_names_it_and_leaves_nothing(plan, tmp_path: Path) -> None:
    job = plan.job("mutr")
    video = plan.videos[0]
    predictions = Path(str(job.required_producer().predictions))
    victim = sorted((predictions / "Annotations" / video).iterdir())[-1]
    shutil.rmtree(victim)
    with pytest.raises(UserError, match=rf"import mutr .*{video}"):
        run_node_video(job, video)
    assert not MaskSet(job.out_dir).is_complete(video)
    assert not (Path(job.out_dir) / "tracks" / video).exists()


def test_key_frames_need_scores_or_a_record(tmp_path: Path) -> None:
    masks = MaskSet(tmp_path / "m")
    frames = ("00000", "00005", "00010")
    masks.write("v", "0", Track(frames, np.zeros((3, 4, 4), bool), scores=[0.1, 0.9, 0.2]))
    masks.write("v", "1", Track(frames, np.zeros((3, 4, 4), bool)))
    masks.mark_complete("v", ["0", "1"])
    with pytest.raises(UserError, match="node n: video v expression 1 has no key frame"):
        key_frames_of(masks, "v", ["0", "1"], "n")
    masks.write_key_frames("v", {"1": 2})
    assert key_frames_of(masks, "v", ["0", "1"], "n") == {"0": 1, "1": 2}
