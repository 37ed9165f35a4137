import numpy as np
import pytest

from codegraph_ad.graph.filtering import dependency_ratio, targeted_filtering


def test_dependency_ratio_guards():
    without = np.array([0.0, 0.5, np.inf, np.inf, 0.4, 0.2])
    with_ = np.array([0.0, 0.0, np.inf, 0.3, 0.2, 0.2])
    d = dependency_ratio(without, with_)
    assert d[0] == 1.0 and d[2] == 1.0 and d[5] == 1.0
    assert d[1] > 1e5  # exact copies only inside c: fully dependent
    assert d[3] == np.inf
    assert d[4] == pytest.approx(2.0, rel=1e-5)
    assert not np.isnan(d).any()


def _fake_scores(n, m, dependent):
    """score 1 everywhere; without community c, the patches in dependent[c] score 5."""

    calls = []

    def score_fn(refs, excluded):
        calls.append((refs.copy(), excluded.copy()))
        s = np.ones((n, m))
        s += 0.01 * np.arange(n * m).reshape(n, m) / (n * m)  # spread for the percentile
        if not refs.all():
            for members, patches in dependent:
                if not refs[members].any():
                    s[patches] = 5.0
        return s

    return score_fn, calls


def test_excludes_exactly_the_dependent_patches_and_updates_in_turn():
    n, m = 10, 6
    dep_a = np.zeros((n, m), dtype=bool)
    dep_a[[1, 2], 0] = True
    dep_b = np.zeros((n, m), dtype=bool)
    dep_b[[5, 6, 7], 3] = True
    comms = [np.array([1, 2]), np.array([5, 6, 7])]
    score_fn, calls = _fake_scores(n, m, [(comms[0], dep_a), (comms[1], dep_b)])
    res = targeted_filtering(score_fn, comms, n, m, percentile=99.0)
    np.testing.assert_array_equal(res.excluded, dep_a | dep_b)
    assert [r.n_excluded for r in res.records] == [2, 3]
    assert res.records[1].excluded_per_image.tolist() == [1, 1, 1]
    # the second community is scored against the base already refined by the first
    assert not calls[0][1].any()
    np.testing.assert_array_equal(calls[2][1], dep_a)
    assert calls[3][0].tolist() == [True] * 5 + [False] * 3 + [True] * 2


def test_skips_a_community_holding_every_image_and_zero_scores():
    n, m = 4, 3
    res = targeted_filtering(lambda r, e: np.zeros((n, m)), [np.arange(4), np.array([0, 1])], n, m, 99.0)
    assert res.records[0].skipped is not None and not res.excluded.any()
    assert res.records[1].skipped is None and res.records[1].threshold == 1.0


def test_rejects_bad_score_shape():
    with pytest.raises(ValueError, match="shape"):
        targeted_filtering(lambda r, e: np.zeros((3, 3)), [np.array([0])], 4, 3, 99.0)


def _split_group_scores(n, m, parts, patches):
    """A repeated group split into ``parts``: its defect patches score high only when every
    part is out of the references (copies in any remaining part still vouch for them)."""

    def score_fn(refs, excluded):
        s = np.ones((n, m)) + 0.01 * np.arange(n * m).reshape(n, m) / (n * m)
        if not any(refs[p].any() for p in parts):
            s[patches] = 5.0
        return s

    return score_fn


def test_joint_filtering_removes_a_group_that_leiden_split():
    n, m = 12, 5
    parts = [np.array([1, 2, 3]), np.array([6, 7])]
    patches = np.zeros((n, m), dtype=bool)
    patches[[1, 2, 3, 6, 7], 2] = True
    score_fn = _split_group_scores(n, m, parts, patches)
    one_by_one = targeted_filtering(score_fn, parts, n, m, percentile=99.0)
    assert not one_by_one.excluded.any()  # each part alone leaves the other part's copies
    joint = targeted_filtering(score_fn, parts, n, m, percentile=99.0, joint=True)
    np.testing.assert_array_equal(joint.excluded, patches)
    assert [r.n_excluded for r in joint.records] == [3, 2]
    assert [r.excluded_per_image.tolist() for r in joint.records] == [[1, 1, 1], [1, 1]]
    assert joint.records[0].threshold == joint.records[1].threshold


def test_joint_filtering_with_one_community_is_the_thesis_algorithm():
    n, m = 10, 6
    dep = np.zeros((n, m), dtype=bool)
    dep[[1, 2], 0] = True
    score_fn, _ = _fake_scores(n, m, [(np.array([1, 2]), dep)])
    a = targeted_filtering(score_fn, [np.array([1, 2])], n, m, 99.0)
    b = targeted_filtering(score_fn, [np.array([1, 2])], n, m, 99.0, joint=True)
    np.testing.assert_array_equal(a.excluded, b.excluded)
    np.testing.assert_array_equal(a.excluded, dep)


def _look_alike_scores(n, m, members, defects, look_alikes):
    """Without c, c's defect patches score 1 + 1.0 .. 1.2 (ratios about 2.0-2.2) and the
    look-alike anomalies outside c 1 + 0.8 .. 1.15 (they were vouched for by c's copies as well);
    every other patch stays at about 1."""
    rng = np.random.default_rng(0)
    jump_c = rng.uniform(1.0, 1.2, size=int(defects.sum()))
    jump_out = rng.uniform(0.8, 1.15, size=int(look_alikes.sum()))
    base = 1.0 + 0.01 * rng.random((n, m))

    def score_fn(refs, excluded):
        s = base.copy()
        if not refs[members].any():
            s[defects] += jump_c
            s[look_alikes] += jump_out
        return s

    return score_fn


def test_look_alike_anomalies_outside_c_no_longer_set_the_threshold():
    n, m = 40, 50
    members = np.arange(10)
    defects = np.zeros((n, m), dtype=bool)
    defects[members, :8] = True  # 8 defect patches in each of c's 10 images
    look_alikes = np.zeros((n, m), dtype=bool)
    look_alikes[[30, 31, 32], :12] = True  # three anomalous images outside c, same kind of defect
    score_fn = _look_alike_scores(n, m, members, defects, look_alikes)
    thesis = targeted_filtering(score_fn, [members], n, m, percentile=99.9)
    caught = thesis.excluded[defects].mean()
    assert 0.0 < caught < 0.9  # the look-alikes' ratios put the threshold among c's defects
    fenced = targeted_filtering(score_fn, [members], n, m, percentile=99.9, look_alike_kappa=3.0)
    np.testing.assert_array_equal(fenced.excluded, defects)
    assert fenced.records[0].threshold < 1.1 < thesis.records[0].threshold
    # joint filtering passes the option on
    joint = targeted_filtering(score_fn, [members[:5], members[5:]], n, m, 99.9, joint=True, look_alike_kappa=3.0)
    np.testing.assert_array_equal(joint.excluded, defects)


def test_look_alike_fence_changes_nothing_without_look_alikes():
    n, m = 40, 50
    members = np.arange(10)
    defects = np.zeros((n, m), dtype=bool)
    defects[members, :8] = True
    none = np.zeros((n, m), dtype=bool)
    score_fn = _look_alike_scores(n, m, members, defects, none)
    a = targeted_filtering(score_fn, [members], n, m, percentile=99.9)
    b = targeted_filtering(score_fn, [members], n, m, percentile=99.9, look_alike_kappa=3.0)
    np.testing.assert_array_equal(a.excluded, b.excluded)
    np.testing.assert_array_equal(a.excluded, defects)


def test_look_alike_images_needs_quartiles_and_respects_the_mask():
    from codegraph_ad.graph.filtering import look_alike_images

    delta = np.ones((10, 4)) + 0.01 * np.arange(40).reshape(10, 4) / 40
    delta[9, 0] = 3.0
    outside = np.arange(10) >= 2
    mask = np.ones((10, 4), dtype=bool)
    assert look_alike_images(delta, outside, mask, 3.0).tolist() == [False] * 9 + [True]
    assert not look_alike_images(delta, outside, mask, 3.0)[:2].any()  # only images outside c
    masked = mask.copy()
    masked[9, 0] = False  # a void patch is no evidence
    assert not look_alike_images(delta, outside, masked, 3.0).any()
    few = np.arange(10) >= 7  # three outside images: no quartiles
    assert not look_alike_images(delta, few, mask, 3.0).any()


def _copies_scores(n, grid, members, defects, normals):
    """c's patches score 1 with c. Without it its defect patches score 3 and its other
    patches (transformed copies' normal regions) 1.5: both depend on c, but 1.5 is an
    ordinary score among the other images' patches (1 to 2, unchanged without c)."""
    m = grid[0] * grid[1]
    base = 1.0 + np.random.default_rng(1).random((n, m))
    base[members] = 1.0

    def score_fn(refs, excluded):
        s = base.copy()
        if not refs[members].any():
            s[defects] = 3.0
            s[normals] = 1.5
        return s

    return score_fn


def test_defect_gate_keeps_the_copies_normal_regions_and_grows_into_neighbours():
    from codegraph_ad.graph.filtering import DefectGate

    n, grid = 30, (6, 6)
    m = grid[0] * grid[1]
    members = np.arange(8)
    defects = np.zeros((n, *grid), dtype=bool)
    defects[members, 2:4, 2:4] = True  # a 2 x 2 defect in each copy
    normals = np.zeros((n, *grid), dtype=bool)
    normals[members] = ~defects[members]
    defects, normals = defects.reshape(n, m), normals.reshape(n, m)
    score_fn = _copies_scores(n, grid, members, defects, normals)
    thesis = targeted_filtering(score_fn, [members], n, m, percentile=99.9)
    np.testing.assert_array_equal(thesis.excluded, defects | normals)  # whole copies leave
    gated = targeted_filtering(score_fn, [members], n, m, 99.9, defect_gate=DefectGate(95.0, grid, 0))
    np.testing.assert_array_equal(gated.excluded, defects)
    grown = targeted_filtering(score_fn, [members], n, m, 99.9, defect_gate=DefectGate(95.0, grid, 1))
    ring = np.zeros((n, *grid), dtype=bool)
    ring[members, 1:5, 1:5] = True  # the defect and its 8-neighbourhood
    np.testing.assert_array_equal(grown.excluded, ring.reshape(n, m))
    joint = targeted_filtering(score_fn, [members[:4], members[4:]], n, m, 99.9, joint=True,
                               defect_gate=DefectGate(95.0, grid, 0))
    np.testing.assert_array_equal(joint.excluded, defects)


def test_defect_gate_checks_its_grid_and_the_pipeline_needs_one():
    from codegraph_ad.config import GraphConfig
    from codegraph_ad.graph.filtering import DefectGate
    from codegraph_ad.graph.pipeline import run_graph_stages

    with pytest.raises(ValueError, match="grid"):
        DefectGate(90.0, (5, 5)).apply(np.ones((2, 24), bool), np.ones((2, 24)), np.ones((2, 24), bool))
    mins = [np.random.default_rng(0).random((6, 6, 4)).astype(np.float32)]
    with pytest.raises(ValueError, match="grid"):
        run_graph_stages(mins, GraphConfig(defect_gate_percentile=90.0), lambda r, e: np.ones((6, 4)))
    with pytest.raises(Exception, match="defect_gate_percentile"):
        GraphConfig(defect_gate_percentile=100.0)
