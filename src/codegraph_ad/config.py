"""Every tunable of the pipeline, in one place, named after docs/SPEC.md.

Each stage reads only its own dataclass; a run's JSON output stores all of them so that a
result can be reproduced exactly. Values marked [reconstructed] in SPEC are backed by the
sweeps in ``benchmarks/`` (see docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
import typing
from typing import Any, Literal

from codegraph_ad.errors import ConfigError
from codegraph_ad.registry import BACKBONES, METHODS


def documented(default: Any, help: str, *, factory: bool = False) -> Any:
    """A dataclass field with its one-line ``help``, which options.py shows on the command line.

    factory: ``default`` is a callable that builds the default (nested configs).
    """
    if factory:
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _require(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")


# dtypes the patch tokens may be held in between extraction and scoring (features/extract.py);
# "auto" resolves per batch (features/extract.py: resolve_token_dtype)
TokenDtype = Literal["auto", "float32", "float16"]


@dataclass(frozen=True)
class FeatureConfig:
    """How images become multi-layer patch tokens (SPEC section 1)."""

    backbone: str = documented("dinov2_vits14_imgfocus", "backbone name (see `codegraph-ad backbones`)")
    # 448 px: the bottle benchmark (docs/benchmarks.md) met every pixel target at 448 and
    # missed pixel F1 at 224; 518 costs 1.8x the scoring time for no measured gain.
    image_size: int = documented(448, "square input side in px, a multiple of the patch size")
    # 1-based blocks; ViT-S/B use 3/6/9/12 (SPEC section 1).
    layers: tuple[int, ...] = documented((3, 6, 9, 12), "1-based transformer blocks whose tokens are used")
    # Raw block outputs beat final-norm tokens on the embedded ViT-S (issue 2 numbers:
    # pixel F1 74.7 vs 69.8 at 224 px), so the final LayerNorm is off by default.
    final_norm: bool = documented(False, "apply the final LayerNorm to the block tokens")
    checkpoint: str | None = documented(None, "local weights file for official backbones")
    batch_size: int = documented(8, "images per backbone call")
    # The tokens are the largest array a run holds (N M L C values: 1.5 GB in float32 for
    # 1,000 images at 224 px, 6 GB at 448 px); float16 halves it, computing stays float32
    # (LNAMD casts each chunk) and the scores move by at most 1.1e-5 (docs/scale.md). auto:
    # float16 where the plan is fixed-K (--references K < N - 1), whose scores are not the
    # exact engine's anyway and whose batches are the large ones; float32 otherwise, so exact
    # runs keep their scores to the last digit.
    token_dtype: TokenDtype = documented(
        "auto", "dtype the patch tokens are held in between extraction and scoring (float16: half the memory; "
        "auto: float16 with fixed-K references, float32 otherwise)")

    def __post_init__(self) -> None:
        # the registry loads the built-in backbones on first use; user entries must be
        # registered (codegraph_ad.backbones.register_backbone) before the config is built
        _require(isinstance(self.backbone, str) and self.backbone in BACKBONES, "backbone", self.backbone,
                 f"a registered backbone ({', '.join(BACKBONES.names())})")
        _require(self.image_size > 0, "image_size", self.image_size, "positive")
        _require(len(self.layers) > 0 and all(i >= 1 for i in self.layers), "layers", self.layers,
                 "a non-empty list of 1-based block indices")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        _require(self.token_dtype in typing.get_args(TokenDtype), "token_dtype", self.token_dtype,
                 " or ".join(map(repr, typing.get_args(TokenDtype))))


@dataclass(frozen=True)
class LNAMDConfig:
    """Local neighbourhood aggregation degrees r (SPEC section 2)."""

    degrees: tuple[int, ...] = documented((1, 3, 5), "LNAMD aggregation degrees r (positive, odd)")

    def __post_init__(self) -> None:
        _require(len(self.degrees) > 0 and all(r >= 1 and r % 2 == 1 for r in self.degrees), "degrees",
                 self.degrees, "a non-empty list of positive odd integers")


@dataclass(frozen=True)
class MSMConfig:
    """Mutual scoring: mean of the K = max(1, ceil(q (N-1))) smallest image distances."""

    q: float = documented(0.3, "MuSc's MSM share q: mean of the ceil(q (N-1)) smallest image distances")

    def __post_init__(self) -> None:
        _require(0.0 < self.q <= 1.0, "q", self.q, "in (0, 1]")


@dataclass(frozen=True)
class RsCINConfig:
    """Image-score re-weighting by [CLS] similarity (MuSc; SPEC section 7)."""

    # Off by default: on the bottle benchmark RsCIN lowered image AUROC at 224 px
    # (99.84 vs 100.0 for the plain max of the map) and left it at 100.0 at 448 px
    # (docs/benchmarks.md). MuSc's k_list for MVTec-like data when it is turned on.
    enabled: bool = documented(False, "re-weight image scores by [CLS] similarity (RsCIN)")
    k_list: tuple[int, ...] = documented((1, 2, 3), "RsCIN neighbourhood sizes k")

    def __post_init__(self) -> None:
        _require(len(self.k_list) > 0 and all(k >= 1 for k in self.k_list), "k_list", self.k_list,
                 "a non-empty list of positive integers")


@dataclass(frozen=True)
class EngineConfig:
    """Mutual-similarity engine knobs (SPEC section 8, issue 4)."""

    # fp32 stays the default: exact distances, the same scores on every machine. "fast"
    # (int8 on AVX-512 VNNI CPUs) scored bottle at 448 px 2.3x faster with pixel metrics
    # within 0.02 points (docs/engine.md), but which mode it picks depends on the machine
    # (bf16 with AMX: 3.7x fp32's engine). CoDeGraph's first pass under fast is fp32 or
    # bf16x3, whichever is faster (methods/first_pass.py: first_pass_precision; int8 lost
    # repeated groups on bottle until its small distances were recomputed in fp32, and bf16
    # with that recompute still moved one cell by a point, docs/codegraph.md).
    precision: Literal["fp32", "bf16", "bf16x3", "int8", "fast"] = documented(
        "fp32", "block-product precision; fast times fp32, bf16 and int8 on this CPU and keeps the fastest "
        "for MuSc, and for CoDeGraph's first pass the faster of fp32 and bf16x3 (bf16 in two parts per "
        "operand: small distances within about 0.2%); an explicit bf16 or int8 runs CoDeGraph 1.1-1.6x faster "
        "than fp32 and can move its metrics by up to 1.1 points, docs/codegraph.md")
    # None: 70% of physical memory (engine/memory.py)
    memory_budget_mb: int | None = documented(None, "scoring memory budget in MB (none: 70% of physical memory)")
    threads: int | None = documented(None, "CPU threads (none: all cores)")  # None: all cores
    subsets: int = documented(1, "subset division s: score the batch in s random parts")  # subset division s
    # [CLS] screening p
    screening_percent: float = documented(
        100.0, "[CLS] screening p: compare each image with this percent of the batch")
    seed: int = documented(0, "seed of the subset division and of the random references")
    # Fixed-K references (issue 27): each query is compared with its K most [CLS]-similar
    # images plus a seeded random share; cost N K M^2, linear in N. None: every other image.
    references: int | None = documented(
        None, "fixed K: compare each image with K references (its nearest by [CLS] plus random ones)")
    # Share of the K references drawn at random (seeded) rather than by [CLS] similarity, so
    # the population stays unbiased if a defect shifts [CLS] (SCALE.md: e.g. 150 + 50 of 200).
    random_references: float = documented(
        0.25, "share of the fixed-K references drawn at random instead of by [CLS] similarity")
    # Position-restricted matching for aligned products: a patch only meets patches within
    # w grid cells of its own position. None: anywhere in the other image.
    window: int | None = documented(None, "match a patch only within this many grid cells of its position")
    device: Literal["cpu", "cuda", "auto"] = documented(
        "cpu", "where the engine runs: cpu, cuda, or auto (cuda when present)")
    # Where the pair tasks and the feature extraction run (issue 25, docs/ray.md): this
    # process, or a Ray cluster; the scores are the same bit for bit.
    backend: Literal["local", "ray"] = documented(
        "local", "where the pair tasks and feature extraction run: local (this process) or ray")
    # None: start a Ray instance on this machine; "auto": join the cluster this machine belongs
    # to (ray start --head / --address); or the head's host:port, or a ray:// client address.
    # Read only with backend "ray" (each knob stays settable on its own, as every option is).
    ray_address: str | None = documented(
        None, "with --engine ray: the cluster to join (none: start one here; auto: the running cluster; host:port)")

    def __post_init__(self) -> None:
        _require(self.precision in ("fp32", "bf16", "bf16x3", "int8", "fast"), "precision", self.precision,
                 "one of fp32, bf16, bf16x3, int8, fast")
        _require(self.references is None or self.references >= 2, "references", self.references, ">= 2 or none")
        _require(0.0 <= self.random_references <= 1.0, "random_references", self.random_references,
                 "in [0, 1]")
        _require(self.window is None or self.window >= 0, "window", self.window, ">= 0 or none")
        _require(self.device in ("cpu", "cuda", "auto"), "device", self.device, "one of cpu, cuda, auto")
        _require(self.backend in ("local", "ray"), "backend", self.backend, "one of local, ray")
        _require(self.ray_address is None or (isinstance(self.ray_address, str) and self.ray_address.strip() != ""),
                 "ray_address", self.ray_address, "a non-empty address or none")
        _require(self.memory_budget_mb is None or self.memory_budget_mb > 0, "memory_budget_mb",
                 self.memory_budget_mb, "positive")
        _require(self.threads is None or self.threads >= 0, "threads", self.threads, ">= 0")
        _require(self.subsets >= 1, "subsets", self.subsets, ">= 1")
        _require(0.0 < self.screening_percent <= 100.0, "screening_percent", self.screening_percent,
                 "in (0, 100]")


@dataclass(frozen=True)
class GraphConfig:
    """CoDeGraph stages 1-3 (SPEC sections 4-7)."""

    # Defaults chosen on the CoDeGraph matrix (benchmarks/codegraph_matrix.py, docs/codegraph.md):
    # clean and repeated-defect batches of two categories at 224 and 448 px, judged against
    # MuSc q = 0.3. The thesis values stay available as options.
    # [thesis: 0.3 N to 0.7 N work] 0.5: a group larger than k has no burnout cliff before
    # rank k, so 0.3 N cannot see a repeated defect in more than ~30% of the batch.
    k_fraction: float = documented(0.5, "burnout rank k as a share of the batch size N")
    # [SPEC 0.5] At 0 the links are the smallest plain ratios, which on bottle at 224 px are
    # normal regions of look-alike images (53-74% of the links); transformed copies of a defect are
    # not near-duplicates there (rank-1 ratio 0.45 vs 0.29 for the 1st percentile of normal
    # patches). dbar^-0.5 favours the larger distances of defect patches: 74% of links then
    # come from the copies' defects and they form one community.
    alpha: float = documented(0.5, "endurance weighting exponent: links favour larger distances dbar^-alpha")
    # None: N links per batch [reconstructed]
    links_per_batch: int | None = documented(None, "links drawn per batch (none: N)")
    target_coverage: float = documented(0.95, "share of the images the links must reach")  # [reconstructed]
    # Tukey fence multiplier [reconstructed]
    kappa: float = documented(3.0, "Tukey fence multiplier on the community densities")
    # [extension] judge each community against the quartiles of the other communities
    # (graph/communities.py); False: one fence over all of them, the candidate included (SPEC).
    leave_one_out_fence: bool = documented(
        False, "judge each community against the quartiles of the other communities")
    # [reconstructed] 2 (SPEC 6.2): every community of two or more images enters the quartiles
    # and may be flagged; 3 leaves pairs out of both (graph/communities.py; volumes use 3).
    min_community_size: int = documented(
        2, "smallest community that enters the Tukey quartiles and may be flagged")
    # [reconstructed] how a community's density is normalised: "per_member" (internal weight
    # over |c|) by default; "per_pair" (SPEC 6.2, over |c|(|c|-1)/2) falls as 1/|c| for a
    # group whose images each send a fixed number of links, so a 29-copy community (45.6)
    # scored under 3-image communities (45.3) and a pair (32) and was never flagged.
    community_density: Literal["per_pair", "per_member"] = documented(
        "per_member", "community density: internal weight per image pair (SPEC) or per member")
    # CPM gamma = this percentile of edge weights [thesis]
    resolution_percentile: float = documented(
        25.0, "CPM resolution = this percentile of the positive edge weights")
    # [extension; thesis 1.0] The weights are link counts, so their 25th percentile is the
    # smallest count, 1 link per pair, and at 1.0 the transform families of a 35% group, joined
    # by 0.3-0.4 links per pair, stayed apart (80-87% of the group flagged). 0.5 on the whole
    # matrix (session 27, `_gscale` files): 46 of 60 cells pass against 43 at 1.0; the 35%
    # groups come together (MPDD 448 px b_35 F1 84.6 -> 91.0); it costs MPDD 224 px a_5 0.7
    # F1 and AUPRO and bottle 224 px b+c_15 0.3 AUPRO (now 0.8 under MuSc). 0.25 lost bottle
    # 224 px b+c_15's groups (docs/codegraph.md, "A CPM resolution below one link per pair").
    resolution_scale: float = documented(
        0.5, "multiplier on the CPM resolution (below 1: pieces with fewer links per pair merge)")
    # [extension] True: one dependency ratio against the base set without every outlier
    # community at once; False: Algorithm 2 visits them one by one (thesis), and a group that
    # Leiden split keeps vouching for itself through its other parts (graph/filtering.py).
    joint_filtering: bool = documented(True, "judge all outlier communities at once instead of one by one")
    # [reconstructed] 99.9: on SynCA bottle at 448 px it won back MuSc's whole loss (F1 81.9,
    # AP 85.7, AUPRO 95.2) and excluded 0.37% of the clean batch, against 79.7 / 84.1 / 94.3
    # and 2.27% at 99 (benchmarks/results/synca_codegraph_sweep_448.json).
    dependency_percentile: float = documented(
        99.9, "percentile of the dependency ratios above which a patch is excluded")
    # [extension] None: the threshold population is every patch outside the outlier
    # communities (thesis). A value: images outside them whose highest dependency ratio is
    # above the Tukey fence Q3 + kappa IQR (anomalies that look like the repeated defect and
    # were vouched for by it too) leave that population (graph/filtering.py). 3 (the
    # communities' own Tukey multiplier): on MPDD metal_plate the batch's defects look like
    # the copied one and set the threshold inside the group's defects; with the fence MPDD
    # a_25 / a_35 at 448 px went from F1 74.2 / 57.2 to 85.9 / 84.1 (clean 85.5), bottle
    # cells moved by -0.5..+0.3 at 448 px and MPDD a_5 at 224 px lost 0.85 AUPRO
    # (docs/codegraph.md, "Look-alike anomalies").
    look_alike_kappa: float | None = documented(
        3.0, "leave look-alike anomalies (Tukey fence with this kappa) out of the dependency threshold's "
        "population (none: every patch outside the outlier communities, thesis)")
    # [extension] None: every patch of the outlier communities above the dependency threshold
    # leaves the references (thesis). A percentile p: only those whose score without the
    # communities is above the p-th percentile of the outside patches' scores, grown by the
    # largest LNAMD half-width (graph/filtering.py: DefectGate); the copies' normal regions
    # stay. p = 90 is the default: at or above the fence alone on all 16 cells at 224 px, on
    # all 5 MPDD cells at 448 px (a_35 F1 88.0 against 84.1) and within 0.12 of it on all 10
    # bottle cells at 448 px (AUPRO up to +0.2), with 20-60% fewer patches excluded; p = 95
    # collapsed on MPDD a_35 at 448 px (F1 44.4). docs/codegraph.md, "What the fence costs".
    defect_gate_percentile: float | None = documented(
        90.0, "exclude only dependent patches scoring above this percentile of the outside patches "
        "without the outlier communities (none: every dependent patch, thesis)")
    # which r feeds the graph [reconstructed]
    graph_degree: int = documented(1, "LNAMD degree r whose minima feed the graph (one of the run's degrees)")
    # [extension] None: the rank-wise mean over all extracted layers feeds the graph [thesis];
    # a tuple of 1-based block numbers, each one of FeatureConfig.layers, restricts it to them
    # (docs/codegraph.md: block 9 alone puts noisy copies in the community, at a cost).
    graph_blocks: tuple[int, ...] | None = documented(
        None, "1-based blocks (among --layers) whose minima feed the graph (none: all, averaged)")
    # [thesis 0.1] 0.3, MuSc's own q: with nothing repeated, q = 0.1 cost 3 points of pixel F1
    # and 7 of AP on MPDD metal_plate; once the copies are out of the references, 0.3 loses
    # nothing on the repeated batches (docs/codegraph.md).
    final_q: float = documented(
        0.3, "MSM share q of CoDeGraph's final scoring against the refined references")
    leiden_seed: int = documented(0, "seed of the Leiden community detection")
    # [extension] False: every outlier community's dependent patches stay out (thesis). True:
    # after the final pass, a community fewer than half of whose images the batch decision
    # (DecisionConfig's defaults, on the max of each map) flags is a group of look-alike
    # normal images: its patches go back into the references and the batch is rescored. A
    # mostly-good MPDD batch flagged 18 good plates and excluded 4.4% of its patches
    # (docs/codegraph.md, "Look-alike groups"); off until the whole matrix has judged it.
    restore_look_alikes: bool = documented(
        False, "put a flagged community's patches back when fewer than half of its images are flagged after rescoring")

    def __post_init__(self) -> None:
        _require(0.0 < self.k_fraction < 1.0, "k_fraction", self.k_fraction, "in (0, 1)")
        _require(self.alpha >= 0.0, "alpha", self.alpha, ">= 0")
        _require(self.links_per_batch is None or self.links_per_batch >= 1, "links_per_batch",
                 self.links_per_batch, ">= 1")
        _require(0.0 < self.target_coverage <= 1.0, "target_coverage", self.target_coverage, "in (0, 1]")
        _require(self.kappa >= 0.0, "kappa", self.kappa, ">= 0")
        _require(self.community_density in ("per_pair", "per_member"), "community_density",
                 self.community_density, "per_pair or per_member")
        _require(0.0 < self.resolution_percentile <= 100.0, "resolution_percentile", self.resolution_percentile,
                 "in (0, 100]")
        _require(self.resolution_scale > 0.0, "resolution_scale", self.resolution_scale, "> 0")
        _require(self.min_community_size >= 2, "min_community_size", self.min_community_size, ">= 2")
        _require(0.0 < self.dependency_percentile <= 100.0, "dependency_percentile",
                 self.dependency_percentile, "in (0, 100]")
        _require(0.0 < self.final_q <= 1.0, "final_q", self.final_q, "in (0, 1]")
        _require(self.look_alike_kappa is None or self.look_alike_kappa >= 0.0, "look_alike_kappa",
                 self.look_alike_kappa, ">= 0 or none")
        _require(self.defect_gate_percentile is None or 0.0 < self.defect_gate_percentile < 100.0,
                 "defect_gate_percentile", self.defect_gate_percentile, "in (0, 100) or none")
        _require(self.graph_blocks is None or (len(self.graph_blocks) > 0 and min(self.graph_blocks) >= 1
                 and len(set(self.graph_blocks)) == len(self.graph_blocks)),
                 "graph_blocks", self.graph_blocks, "None or distinct 1-based block numbers")


# ---- scoring new images later (issue 26 item 2): kept in its own block to ease merges
@dataclass(frozen=True)
class ReferenceConfig:
    """What an image run stores so that new images can be scored against it later
    (``codegraph-ad score``, methods/reference.py)."""

    # On: in float16 the reference is 0.79 MB per image at 224 px (4 layers x 256 patches x
    # 384 channels of ViT-S; measured on bottle) and 3.1 MB at 448 px, while the run's maps of
    # bottle's 900 x 900 images take 3.2 MB per image (docs/score.md); off leaves a run folder as before.
    store_reference: bool = documented(
        True, "image runs: store the batch's features (reference.npz) so `codegraph-ad score` can score new images")
    # float16 halves the file; on bottle at 224 px it moved new images' patch scores by at
    # most 3.3e-6 against float32 features (benchmarks/results/score_new.json).
    reference_dtype: Literal["float16", "float32"] = documented(
        "float16", "precision of the stored reference features")

    def __post_init__(self) -> None:
        _require(self.reference_dtype in ("float16", "float32"), "reference_dtype", self.reference_dtype,
                 "float16 or float32")


@dataclass(frozen=True)
class DecisionConfig:
    """The per-image decision drawn from the batch alone (decision.py): which images to flag.

    The batch is assumed mostly normal; a robust model of its normal image scores puts the
    threshold where a normal image exceeds it with probability ``false_alarm_rate``.
    """

    # 0.01: the usual line target of one false reject per 100 good parts. The normal model
    # is a Gaussian fit, so smaller rates lean on a tail that a batch of a few dozen good
    # images cannot check; the realised rates are measured in docs/decisions.md.
    false_alarm_rate: float = documented(
        0.01, "share of normal images allowed above the threshold (prediction bound of the normal model)")
    # None: fitted on the batch; a number: flag the images whose score is above it.
    threshold: float | None = documented(None, "fixed image-score threshold (none: fit it on the batch)")
    # gmm: the median of MVTec bottle's test set (76% anomalous) and of its SynCA variant lies
    # among the anomalies, and mad flagged 3 of 63 and 0 of 75 anomalous images there; the
    # mixture's lowest component finds the good images on batches from mostly normal
    # (decisions.py) to 84% anomalous (the CoDeGraph matrix's cells: docs/decisions.md).
    rule: Literal["mad", "gmm"] = documented(
        "gmm", "normal model: a 1-3 Gaussian mixture by BIC, lowest component (gmm), or median + MAD (mad)")
    # 0.5: a repeated defect's copies, no longer vouching for each other, score as anomalous
    # (96-100% of SynCA copies flagged at 448 px); a dense group of good look-alikes stays
    # under the threshold (MPDD metal_plate's mostly-normal batch: 0 of 18). A majority, not
    # "any", so one good image with glare does not make a look-alike group a defect.
    group_defect_share: float = documented(
        0.5, "share of a CoDeGraph group's images that must be flagged to report it as a repeated defect")

    def __post_init__(self) -> None:
        _require(0.0 < self.false_alarm_rate < 0.5, "false_alarm_rate", self.false_alarm_rate, "in (0, 0.5)")
        _require(self.rule in ("mad", "gmm"), "rule", self.rule, "mad or gmm")
        _require(0.0 <= self.group_defect_share <= 1.0, "group_defect_share", self.group_defect_share, "in [0, 1]")
        _require(self.threshold is None or (isinstance(self.threshold, (int, float))
                 and self.threshold == self.threshold and abs(self.threshold) != float("inf")),
                 "threshold", self.threshold, "None or a finite number")


# ---- pixel masks of flagged images (issue 26 item 1); the pseudo-masks of distill/ use the same
FitScope = Literal["image", "batch"]


@dataclass(frozen=True)
class PseudoMaskConfig:
    """Truncated Gaussian-mixture thresholding of anomaly maps (SPEC section 10).

    q: scores above the q-quantile are left out of the fit so that the (few) anomalous pixels
        do not widen the normal component [reconstructed, 0.95].
    beta: tail probability of each component: t_k = mu_k + z_(1-beta) sigma_k
        [reconstructed, 0.01].
    scope: "batch" (default) pools the maps of the run and fits one threshold for all of them;
        "image" fits one mixture per anomaly map (the thesis's formulation). Per image, every
        normal image gets its own top few percent of pixels flagged, and a large defect widens
        its own map's mixture: on MVTec bottle at 224 px (benchmarks/results/
        distill_pseudomask.json) pixel F1 was 39.0 per image vs 72.6 per batch, image-level
        agreement 69 % vs 95 %, with the same q and beta.
    max_components: the BIC chooses among 1..max_components (the thesis uses 1 or 2).
    max_fit_samples: pixels drawn (seeded, without replacement) for the fit; the maps are
        bilinear upsamplings of a patch grid, so a subsample loses nothing and keeps the fit
        in milliseconds at camera resolution.
    """

    q: float = documented(0.95, "truncation quantile of the mixture fit, in (0, 1]")
    beta: float = documented(0.01, "tail probability per component: mu + z(1-beta) sigma, in (0, 1)")
    scope: FitScope = documented("batch", "fit one mixture for the whole run (batch) or one per map (image)")
    max_components: int = documented(2, "largest number of mixture components the BIC chooses from (>= 1)")
    max_fit_samples: int = documented(20_000, "pixels drawn for the fit (>= 10)")
    seed: int = documented(0, "seed of the pixel subsample")

    def validate(self) -> PseudoMaskConfig:
        if not 0.0 < self.q <= 1.0:
            raise ConfigError(f"pseudo-mask q must be in (0, 1], got {self.q}")
        if not 0.0 < self.beta < 1.0:
            raise ConfigError(f"pseudo-mask beta must be in (0, 1), got {self.beta}")
        if self.scope not in ("image", "batch"):
            raise ConfigError(f"pseudo-mask scope must be 'image' or 'batch', got {self.scope!r}")
        if self.max_components < 1:
            raise ConfigError(f"max_components must be >= 1, got {self.max_components}")
        if self.max_fit_samples < 10:
            raise ConfigError(f"max_fit_samples must be >= 10, got {self.max_fit_samples}")
        return self


@dataclass(frozen=True)
class RunConfig:
    """A whole detection run."""

    # A name in codegraph_ad.registry.METHODS: the built-ins, or a method a user registered.
    method: str = documented("codegraph", "scoring method (see `codegraph-ad methods`)")
    features: FeatureConfig = documented(FeatureConfig, "backbone and tokens", factory=True)
    lnamd: LNAMDConfig = documented(LNAMDConfig, "local neighbourhood aggregation", factory=True)
    msm: MSMConfig = documented(MSMConfig, "MuSc's mutual scoring", factory=True)
    rscin: RsCINConfig = documented(RsCINConfig, "image-score re-weighting", factory=True)
    engine: EngineConfig = documented(EngineConfig, "mutual-similarity engine", factory=True)
    graph: GraphConfig = documented(GraphConfig, "CoDeGraph graph stages", factory=True)
    decision: DecisionConfig = documented(DecisionConfig, "flagging images from the batch alone", factory=True)
    # scoring new images against this run later (issue 26 item 2)
    reference: ReferenceConfig = documented(ReferenceConfig, "stored reference set for `score`", factory=True)

    def __post_init__(self) -> None:
        names = METHODS.names()
        _require(self.method in names, "method", self.method, f"one of the registered methods ({', '.join(names)})")


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return asdict(config)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from ``config_to_dict`` output.

    Keys missing from ``data`` keep the defaults of ``cls`` (a nested config keeps the one
    its parent's default builds, so a volume run keeps its volume defaults). A run.json
    written before graph_blocks holds 0-based ``graph.graph_layers``; they are converted.
    """
    return config_update(cls(), data)


def config_update(base: Any, data: dict[str, Any]) -> Any:
    """``base`` with the fields named in ``data`` (``config_to_dict`` layout) replaced."""
    if not isinstance(data, dict):
        raise ConfigError(f"{type(base).__name__}: expected a JSON object, got {data!r}")
    if isinstance(base, RunConfig):
        data = upgrade_run_dict(data)
    changes = {}
    for f in fields(base):
        if f.name not in data:
            continue
        value = data[f.name]
        current = getattr(base, f.name)
        if is_dataclass(current):
            value = config_update(current, value)
        elif isinstance(value, list):
            value = tuple(value)
        changes[f.name] = value
    return replace(base, **changes) if changes else base


def upgrade_run_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A RunConfig dict with the old 0-based ``graph.graph_layers`` turned into ``graph_blocks``."""
    graph = data.get("graph")
    if not isinstance(graph, dict) or "graph_layers" not in graph:
        return data
    graph = dict(graph)
    old = graph.pop("graph_layers")
    if old is not None:
        layers = tuple((data.get("features") or {}).get("layers", FeatureConfig().layers))
        if any(not isinstance(i, int) or not 0 <= i < len(layers) for i in old):
            raise ConfigError(f"graph_layers {old} must be 0-based indices into layers {layers}")
        graph["graph_blocks"] = [layers[i] for i in old]
    return {**data, "graph": graph}


def graph_layer_indices(layers: tuple[int, ...], graph_blocks: tuple[int, ...] | None) -> list[int]:
    """Positions in ``layers`` (FeatureConfig.layers) of the blocks that feed the graph.

    None: every extracted layer. A block that is not extracted is a ConfigError, raised
    before any work by the CLI and by the method.
    """
    if graph_blocks is None:
        return list(range(len(layers)))
    missing = [b for b in graph_blocks if b not in layers]
    if missing:
        raise ConfigError(f"graph_blocks {tuple(graph_blocks)}: block(s) {missing} are not among the "
                          f"extracted layers {tuple(layers)}")
    return [list(layers).index(b) for b in graph_blocks]
