"""Property tests: on arbitrary inputs every metric is None or a float in [0, 1], never NaN."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from codegraph_ad.metrics import image_metrics, pixel_metrics, volume_metrics, voxel_auroc

_SETTINGS = settings(max_examples=40, deadline=None, database=None)
# Few distinct values on purpose: ties and degenerate classes are the interesting cases.
_scores = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False, width=32)


def _in_unit_or_none(values: dict) -> None:
    for key, v in values.items():
        if key == "dice_per_volume":
            assert all(0.0 <= x <= 1.0 for x in v)
        elif key != "threshold":
            assert v is None or (isinstance(v, float) and 0.0 <= v <= 1.0), (key, v)


@_SETTINGS
@given(st.integers(1, 30).flatmap(lambda n: st.tuples(arrays(np.float64, n, elements=_scores), arrays(bool, n))))
def test_image_metrics_in_unit_interval(data: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = data
    _in_unit_or_none(image_metrics(scores, labels))


@_SETTINGS
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)).flatmap(
        lambda shape: st.tuples(arrays(np.float32, shape, elements=_scores), arrays(bool, shape))
    ),
    st.floats(min_value=0.01, max_value=1.0),
)
def test_pixel_metrics_in_unit_interval(data: tuple[np.ndarray, np.ndarray], limit: float) -> None:
    maps, masks = data
    _in_unit_or_none(pixel_metrics(maps, masks, fpr_limit=limit))


@_SETTINGS
@given(
    st.integers(1, 3).flatmap(
        lambda d: st.tuples(arrays(np.float64, (d, d, d), elements=_scores), arrays(bool, (2 * d, 2 * d, 2 * d)))
    )
)
def test_volume_metrics_in_unit_interval(data: tuple[np.ndarray, np.ndarray]) -> None:
    token_map, gt = data
    _in_unit_or_none(volume_metrics([token_map], [gt]))
    full = np.repeat(np.repeat(np.repeat(token_map, 2, 0), 2, 1), 2, 2)
    v = voxel_auroc([full], [gt])
    assert v is None or 0.0 <= v <= 1.0
