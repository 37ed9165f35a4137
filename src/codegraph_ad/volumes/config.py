"""Every tunable of the volume pipeline and of the synthetic cohort builder (SPEC section 9).

Only what is specific to volumes lives here; the scoring stages after token construction
read the ordinary ``RunConfig`` (held in ``VolumeConfig.run``), unchanged from 2D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from codegraph_ad.config import FeatureConfig, GraphConfig, LNAMDConfig, RsCINConfig, RunConfig, documented
from codegraph_ad.errors import ConfigError


def default_volume_run() -> RunConfig:
    """The 2D run configuration with the settings that differ for volumes.

    LNAMD degrees = (1,): the 2D LNAMD pools over an (h, w) grid, which a flattened 3D grid
    is not, and each 3D-patch token already averages a whole p^3 cube (its neighbourhood
    role); r = 1 is the identity pooling, so only the per-volume LayerNorm is applied.
    RsCIN off: SPEC section 9 defines the patient score from the token scores alone.
    FeatureConfig.image_size is ignored: slices are fed at the cube side ``VolumeConfig.size``.
    Endurance weighting alpha = 0.5 (SPEC section 4's value; 2D keeps 0, docs/codegraph.md):
    a lesion fills a few of ~1,700 cubes, so its links compete with a vast tail of normal
    cubes whose early ranks happen to be close; dbar^(-alpha) favours the larger absolute
    distances of lesion copies. On the single-source benchmark cohort it turned the
    consistent lesions into the one outlier community (consistent Dice 0.05 -> 0.65, seed 0);
    on the two-source cohorts it changed nothing (docs/volumes.md).
    Tukey kappa = 1.5 (the thesis' "broader sensitivity" value; 2D keeps 3, where 1.5-5 change
    nothing on SynCA): a volume batch gives few communities (4-10), and CPM at the 25th
    percentile of integer link counts lets weakly linked volumes join the consistent-lesion
    group, diluting its density just under the 3 IQR fence. At D = 224 it flagged that group
    on 3 of 3 benchmark cohorts instead of 1 (docs/volumes.md, "kappa 1.5 and a position baseline").
    Communities of 3 or more volumes only enter the Tukey quartiles (2D: 2): a two-volume
    community's density is one pair's link count, not an average over many pairs, and on a
    held-out cohort a dense healthy pair and a healthy-random pair lifted the fence over the
    consistent-lesion group (docs/volumes.md, "Pairs out of the Tukey fence").
    k = 0.3 N, per-pair densities, one-by-one filtering, final q = 0.1, the thesis's
    dependency population (no look-alike fence, no defect gate) and CPM resolution (scale 1)
    are pinned: every volume benchmark was measured with them; the 2D defaults moved after
    the image matrix (docs/codegraph.md). The 2D scale 0.5 was checked on two held-out
    cohorts and lost the consistent group on both (weakly linked volumes join its community
    and its per-pair density falls under the fence; docs/volumes.md).
    """
    return RunConfig(features=FeatureConfig(batch_size=32), lnamd=LNAMDConfig(degrees=(1,)),
                     rscin=RsCINConfig(enabled=False),
                     graph=GraphConfig(alpha=0.5, kappa=1.5, min_community_size=3, k_fraction=0.3,
                                       community_density="per_pair", joint_filtering=False, final_q=0.1,
                                       look_alike_kappa=None, defect_gate_percentile=None,
                                       resolution_scale=1.0))


@dataclass(frozen=True)
class VolumeConfig:
    """How NIfTI volumes become 3D-patch tokens, and how their maps are written.

    size: cube side D (the thesis resizes to 224); a multiple of the backbone patch size,
        giving a token grid of (D/p)^3 cubes.
    crop: "brain" crops each volume to the bounding box of its brain mask (plus
        ``crop_margin`` voxels) before resampling, which removes the void background as the
        thesis' fixed crop does and roughly aligns brains of different sizes; "none"
        resamples the whole field of view.
    percentiles: brain-voxel intensity percentiles mapped to 0 and ``white_level``.
    white_level: where the upper percentile lands; values clip at 1, so the headroom above
        it keeps the contrast of lesions brighter than the brightest normal tissue (on T1,
        a hyperintense lesion in white matter would otherwise be clipped flat).
    histogram_standardisation: Nyul-Udupa piecewise-linear standardisation of each volume's
        brain histogram to the batch mean landmarks (transductive, like the scoring).
    projection_dim: d', the per-axis token size after the seeded Gaussian projection
        [reconstructed: 128]; 0 keeps the backbone's C per axis (no projection: with ViT-S
        at D = 224 sharper maps but no better patient ranking, at 2.1-2.8x the scoring time;
        docs/volumes.md).
    projection_seed: seed of that projection, shared by every volume of every run.
    void_fraction: a cube with fewer than this share of brain voxels is void: it is kept
        out of CoDeGraph's links and filtering population [reconstructed: 0.5].
    void_scores: "zero" sets the scores of void cubes to 0 (nothing outside the brain can
        be a lesion; boundary cubes otherwise mix brain shape into the patient score);
        "keep" leaves them as scored.
    slice_stride: feed every s-th slice of each group of p to the backbone [extension: 2;
        thesis: 1 = all]. Every benchmark cohort was run at 2, and all slices on the held-out
        D = 224 cohort gave the same default patient AUROC and no better Dice at twice the
        token time (docs/volumes.md, "All slices"); larger values trade fidelity for time.
    staggered: also tokenise the cube shifted by half a cube along x, y and z (a body-centred
        lattice, lattice.py), so a lesion is never split evenly between eight cubes; maps are
        then drawn on the half-cube grid (2 D/p)^3. Doubles the token time, and the scoring
        time grows with the square of the token count (about 4x measured, docs/volumes.md).
    patient_min_share: the patient score is the maximum over cubes with at least this brain
        share; None counts every solid cube (``void_fraction``), as SPEC section 9 does. 1.0
        counts only cubes wholly inside the brain: partial-volume cubes on the brain surface
        follow each brain's outline and held the healthy maxima of the benchmark cohorts
        (docs/volumes.md), at the cost of surface lesions counting only where they reach a
        whole cube. The maps are not changed.
    patient_baseline: "position-median" (default) takes the largest excess of a cube's score
        over the batch median at the same cube position (over the volumes where it is solid);
        "none" takes the maximum token score, SPEC section 9's protocol. Inputs are
        co-registered, so one position holds the same anatomy in every volume and its median
        is how hard that place is to match in this batch; healthy maxima sit where every brain
        scores high (mostly partial-volume cubes on the brain surface), lesions where their
        position usually does not. At D = 224 it ranked patients better than the maximum on
        four of six benchmark cohorts (one equal, one lower: the fresh seed 5), mean AUROC
        0.908 against 0.890 (docs/volumes.md, "A held-out cohort at D = 224" and "Pairs out
        of the Tukey fence").
        The maps are not changed [extension].
    Slices per backbone call: ``run.features.batch_size``.
    """

    size: int = documented(
        224, "cube side D in voxels (a multiple of the patch size); slices are fed at this size")
    crop: Literal["brain", "none"] = documented("brain", "crop to the brain's bounding box before resampling")
    crop_margin: int = documented(2, "voxels kept around the brain box when cropping")
    percentiles: tuple[float, float] = documented(
        (0.5, 99.5), "brain-voxel intensity percentiles mapped to 0 and --white-level")
    white_level: float = documented(0.75, "where the upper percentile lands (headroom for bright lesions)")
    histogram_standardisation: bool = documented(
        True, "Nyul standardisation of each brain histogram to the batch landmarks")
    projection_dim: int = documented(128, "d' per axis after the seeded projection (0: keep the backbone's C)")
    projection_seed: int = documented(0, "seed of the token projection")
    void_fraction: float = documented(0.5, "cubes with less brain than this are kept out of the graph stages")
    void_scores: Literal["zero", "keep"] = documented("zero", "zero the scores of void cubes, or keep them")
    slice_stride: int = documented(2, "feed every s-th slice of each group of p to the model (1: all slices)")
    staggered: bool = documented(False, "add the token grid shifted by half a cube (finer maps, ~4x scoring time)")
    patient_min_share: float | None = documented(
        None, "patient score = max over cubes with at least this brain share (none: every solid cube)")
    patient_baseline: Literal["none", "position-median"] = documented(
        "position-median", "patient score: excess over the batch median at the same cube position, or the max (none)")
    run: RunConfig = documented(default_volume_run, "the 2D run configuration the token scoring reads", factory=True)

    def __post_init__(self) -> None:
        if self.projection_dim < 0:
            raise ConfigError(f"projection_dim must be >= 0 (0 = no projection), got {self.projection_dim}")
        if self.patient_min_share is not None and not 0.0 <= self.patient_min_share <= 1.0:
            raise ConfigError(f"patient_min_share must be in [0, 1] or None, got {self.patient_min_share}")
        if self.patient_baseline not in ("none", "position-median"):
            raise ConfigError(f"patient_baseline must be 'none' or 'position-median', got {self.patient_baseline!r}")


@dataclass(frozen=True)
class LesionConfig:
    """Synthetic lesions: irregular ellipsoids with a relative intensity change and texture.

    diameter_mm: range of the ellipsoid's largest diameter; the other two axes are
        ``axis_ratio`` times it. contrast: |intensity change| as a fraction of the local
        tissue intensity (sign drawn at random: hypo- or hyper-intense).
    irregularity: amplitude of the smooth noise that perturbs the boundary (in units of the
        normalised ellipsoid radius). texture: amplitude of the smooth multiplicative noise
        inside the lesion (fraction of the local intensity). edge_mm: width of the soft edge.
    """

    diameter_mm: tuple[float, float] = documented(
        (8.0, 30.0), "range of the random lesions' largest diameter in mm (equal ends fix it)")
    axis_ratio: tuple[float, float] = documented(
        (0.6, 1.0), "range of the other two axes as a share of the largest")
    contrast: tuple[float, float] = documented(
        (0.15, 0.40), "range of the |intensity change|, a fraction of the local tissue intensity")
    irregularity: float = documented(0.25, "boundary noise amplitude, in units of the normalised radius")
    texture: float = documented(
        0.08, "texture noise amplitude inside the lesion (fraction of the local intensity)")
    edge_mm: float = documented(2.0, "width of the soft lesion edge in mm")

    def __post_init__(self) -> None:
        # a range with equal ends fixes the value (how a sensitivity study sets one size or contrast)
        for name, (lo, hi), top in (("diameter_mm", self.diameter_mm, float("inf")),
                                    ("axis_ratio", self.axis_ratio, 1.0), ("contrast", self.contrast, 1.0)):
            if not 0.0 < lo <= hi <= top:
                raise ConfigError(f"{name} must be a range 0 < min <= max <= {top}, got ({lo}, {hi})")


@dataclass(frozen=True)
class CohortConfig:
    """A seeded synthetic cohort built from real healthy volumes (README of shared/data/mri).

    sources: healthy, skull-stripped volumes to derive subjects from (paths; the builder
        refuses empty ones). voxel_mm: isotropic spacing of the written volumes.
    n_healthy / n_random / n_consistent: subjects without lesion, with one random lesion,
        with the consistent lesion type (same shape, size, intensity and place, up to
        ``consistent_jitter``).
    deformation_mm: peak amplitude of the smooth random displacement field, smoothness_mm
        its Gaussian correlation length. rotation_deg / scale: random affine ranges. The
        defaults imitate what remains between subjects after registration to a template
        (inputs are expected co-registered): a few degrees, a few percent, and a field
        whose 8 mm peak puts two subjects of one source about as far apart, cube by cube,
        as two real people (benchmarks/cohort_deformation.py; at 2.5 mm they were
        near-duplicates and the graph stages grouped volumes by source brain).
    gamma / bias / noise: intensity changes of healthy subjects: gamma exponent range,
        amplitude of a smooth multiplicative bias field (what remains after bias-field
        correction), Gaussian noise (fraction of the brain's 99th percentile).
    consistent_diameter_mm / consistent_contrast / consistent_place: the repeated lesion
        type; place is a position in the unit cube of the subject's brain bounding box.
    consistent_jitter: relative jitter of the repeated lesion's size, contrast and place.
    """

    sources: tuple[str, ...] = documented(
        (), "healthy, skull-stripped NIfTI volumes to derive subjects from (repeat --source)")
    voxel_mm: float = documented(1.5, "isotropic spacing of the written volumes in mm")
    n_healthy: int = documented(22, "subjects without lesion")
    n_random: int = documented(5, "subjects with one random lesion")
    n_consistent: int = documented(5, "subjects with the repeated lesion type")
    deformation_mm: float = documented(8.0, "peak amplitude of the smooth random displacement field in mm")
    smoothness_mm: float = documented(20.0, "correlation length of that field in mm")
    rotation_deg: float = documented(2.0, "largest random rotation in degrees")
    scale: tuple[float, float] = documented((0.97, 1.03), "range of the random scale")
    gamma: tuple[float, float] = documented((0.85, 1.18), "range of the intensity gamma exponent")
    bias: float = documented(0.04, "amplitude of the smooth multiplicative bias field")
    noise: float = documented(0.015, "Gaussian noise, a fraction of the brain's 99th percentile")
    lesion: LesionConfig = documented(LesionConfig, "the random lesions", factory=True)
    consistent_diameter_mm: float = documented(22.0, "largest diameter of the repeated lesion type in mm")
    consistent_contrast: float = documented(0.30, "intensity change of the repeated lesion type")
    consistent_place: tuple[float, float, float] = documented(
        (0.32, 0.55, 0.62), "place of the repeated lesion in the unit cube of the brain's box")
    consistent_jitter: float = documented(
        0.08, "relative jitter of the repeated lesion's size, contrast and place")
    seed: int = documented(0, "seed of every random draw of the cohort")
