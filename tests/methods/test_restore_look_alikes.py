"""GraphConfig.restore_look_alikes: an outlier community whose images still score as normal
after the final pass gets its patches back, and the batch is rescored without it."""

from __future__ import annotations

import numpy as np
import torch

from codegraph_ad.methods.codegraph import restore_look_alikes

N, M = 40, 6


def _batch(look_alike_high: bool):
    """40 images: normal maxima around 0.3 (seeded), two anomalous images (0.9), and two
    outlier communities: {0, 1, 2} the anomalous-looking one, {10, 11, 12, 13} the other."""
    rng = np.random.default_rng(0)
    final = 0.3 + 0.01 * rng.standard_normal((N, M))
    final[[0, 1, 2], 0] = 0.9
    final[[20, 21], 3] = 0.9
    if look_alike_high:
        final[[10, 11, 12, 13], 2] = 0.9
    communities = [np.array([0, 1, 2]), np.array([10, 11, 12, 13])]
    excluded = np.zeros((N, M), dtype=bool)
    excluded[[0, 1, 2], :2] = True
    excluded[[10, 11, 12, 13], 1:4] = True
    diagnostics = {
        "outlier_communities": [4, 7],
        "filtering": [{"community": 4, "images": [0, 1, 2], "n_excluded": 6, "excluded_per_image": [2, 2, 2]},
                      {"community": 7, "images": [10, 11, 12, 13], "n_excluded": 12,
                       "excluded_per_image": [3, 3, 3, 3]}],
        "excluded_per_image": {str(i): int(excluded[i].sum()) for i in range(N)},
        "exclusion_rate": float(excluded.mean()),
    }
    return final, communities, excluded, diagnostics


def test_a_community_that_stays_normal_is_put_back_and_the_batch_rescored():
    final, communities, excluded, diagnostics = _batch(look_alike_high=False)
    seen = []

    def score_fn(reference_images, excl):
        seen.append(excl.copy())
        return final - 0.05 * excl.any(axis=1, keepdims=True)  # anything the caller can tell apart

    new_excluded, new_final = restore_look_alikes(communities, excluded, final, score_fn, diagnostics)
    expected = excluded.copy()
    expected[[10, 11, 12, 13]] = False
    assert np.array_equal(new_excluded, expected)
    assert len(seen) == 1 and np.array_equal(seen[0], expected)
    assert np.array_equal(new_final, final - 0.05 * expected.any(axis=1, keepdims=True))
    assert diagnostics["restored_communities"] == [7]
    kept, restored = diagnostics["filtering"]
    assert (kept["restored"], kept["n_excluded"], kept["excluded_per_image"]) == (False, 6, [2, 2, 2])
    assert (restored["restored"], restored["n_excluded"], restored["excluded_per_image"]) == (True, 0, [0] * 4)
    assert diagnostics["excluded_per_image"]["10"] == 0 and diagnostics["excluded_per_image"]["0"] == 2
    assert diagnostics["exclusion_rate"] == float(expected.mean())
    assert excluded[[10, 11, 12, 13]].any()  # the caller's array is not modified


def test_communities_that_turn_out_anomalous_keep_their_exclusions_without_a_rescore():
    final, communities, excluded, diagnostics = _batch(look_alike_high=True)

    def score_fn(reference_images, excl):
        raise AssertionError("nothing to rescore")

    new_excluded, new_final = restore_look_alikes(communities, excluded, final, score_fn, diagnostics)
    assert new_excluded is excluded and new_final is final
    assert diagnostics["restored_communities"] == []
    assert "restored" not in diagnostics["filtering"][0]


def test_the_option_keeps_a_real_repeated_defect_end_to_end(tmp_path):
    """The planted run of tests/report (a real CoDeGraph run): its planted group scores as
    anomalous after the final pass, so the option changes nothing."""
    from tests.report.runs import PLANTED, planted_codegraph_result

    plain = planted_codegraph_result(tmp_path / "plain")
    checked = planted_codegraph_result(tmp_path / "checked", restore_look_alikes=True)
    assert checked.scores.diagnostics["subsets"][0]["restored_communities"] == []
    assert torch.equal(checked.scores.excluded, plain.scores.excluded)
    assert checked.scores.excluded[list(PLANTED)].any()
    assert torch.equal(checked.scores.patch_scores, plain.scores.patch_scores)


def test_a_decision_that_flags_no_image_puts_nothing_back():
    final, communities, excluded, diagnostics = _batch(look_alike_high=False)
    final[:] = 0.3  # every image alike: nothing above the fitted threshold

    def score_fn(reference_images, excl):
        raise AssertionError("nothing to rescore")

    new_excluded, _ = restore_look_alikes(communities, excluded, final, score_fn, diagnostics)
    assert new_excluded is excluded and diagnostics["restored_communities"] == []
