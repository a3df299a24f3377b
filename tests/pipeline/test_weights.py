"""Project weights files: the test-time settings in their ``lsvos.inference`` metadata."""

from __future__ import annotations

import json

import pytest

from pipeline.adapters.weights import INFERENCE_KEY, inference_settings, inference_short_side
from pipeline.core.errors import InputFileError


def test_recorded_short_side_is_read_and_absent_means_none() -> None:
    assert inference_short_side({INFERENCE_KEY: json.dumps({"short_side": 224})}) == 224
    assert inference_short_side({INFERENCE_KEY: json.dumps({"scales": [2.0]})}) is None
    assert inference_short_side({}) is None
    assert inference_settings({}) == {}


@pytest.mark.parametrize(
    "text", ["{not json", "[160]", '{"short_side": "160"}', '{"short_side": 0}']
)
def test_bad_inference_metadata_is_an_error_naming_the_key(text: str) -> None:
    with pytest.raises(InputFileError, match=INFERENCE_KEY):
        inference_short_side({INFERENCE_KEY: text})
