"""Python API: the same power as the CLI, in three calls.

    from codegraph_ad import RunConfig, detect, evaluate
    result = detect("images/", "out/", RunConfig(method="codegraph"))
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from codegraph_ad._version import __version__
from codegraph_ad.config import PseudoMaskConfig, RunConfig, config_to_dict
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.decision import Decision, decide
from codegraph_ad.engine.threads import thread_budget
from codegraph_ad.errors import InputError
from codegraph_ad.features.extract import FeatureSet, resolve_token_dtype
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.io.batch import ImageBatch, load_batch
from codegraph_ad.io.images import resolve_inputs
from codegraph_ad.io.run_folder import (
    EXCLUDED,
    MANIFEST,
    METRICS,
    PATCH_SCORES,
    BackboneIdentity,
    Manifest,
    RunFolder,
    RunWriter,
    ScoreRow,
    output_folder,
    read_run_folder,
    upsample_map,
)
from codegraph_ad.methods import make_method
from codegraph_ad.methods.base import ScoreResult, check_batch_size
from codegraph_ad.pixel_decision import PixelDecision, batch_fit, fit_threshold, map_sample
from codegraph_ad.progress import Progress


@dataclass
class RunResult:
    """What a run produced: per-image names, scores and where the files are."""

    names: list[str]
    paths: list[Path]
    scores: ScoreResult
    config: RunConfig
    timings: dict[str, float]
    original_sizes: list[tuple[int, int]] = field(default_factory=list)
    out_dir: Path | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    backbone: BackboneIdentity | None = None
    # the batch's features while they wait to be written as the run's reference set
    # (RunConfig.reference); write_run drops them once written
    features: FeatureSet | None = field(default=None, repr=False)
    decision: Decision | None = None  # the per-image flags; drawn from the scores when not given
    # the threshold of the flagged images' masks: fitted on the batch's maps when the run is
    # written (None until then, and for runs written without masks), or given (``score``)
    pixel_decision: PixelDecision | None = None

    def __post_init__(self) -> None:
        if self.decision is None:
            self.decision = decide(self.scores.image_scores, self.config.decision)

    def table(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.score_rows()]

    def groups(self) -> list[dict[str, Any]] | None:
        """The run's CoDeGraph groups (``graph.groups.repeated_defect_groups``), each called a
        repeated defect or a look-alike group by the run's flags; None without graph stages."""
        from codegraph_ad.graph.groups import repeated_defect_groups

        return repeated_defect_groups(self.scores.diagnostics, self.names, self.decision.anomalous,
                                      self.config.decision.group_defect_share)

    def score_rows(self) -> list[ScoreRow]:
        return [ScoreRow(n, str(p), float(s), float(r), anomalous=bool(a))
                for n, p, s, r, a in zip(self.names, self.paths, self.scores.image_scores,
                                         self.scores.raw_image_scores, self.decision.anomalous)]


@dataclass
class EvaluationResult:
    run: RunResult
    metrics: dict[str, Any]


def versions() -> dict[str, str]:
    """Library versions that change numbers; stored with every result."""
    out = {"codegraph_ad": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "platform": platform.platform()}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def used_backbone(config: RunConfig, backbone: Any = None) -> BackboneIdentity:
    """The identity of the backbone a run with ``config`` (and the caller's ``backbone``) uses."""
    from codegraph_ad.backbones.identity import backbone_identity

    return backbone_identity(config.features.backbone, config.features.checkpoint, backbone)


def load_backbone(config: RunConfig):
    """The backbone of a run configuration (``backbones.from_config.backbone_from_config``)."""
    from codegraph_ad.backbones.from_config import backbone_from_config

    return backbone_from_config(config.features, config.engine.threads, device=config.engine.device)


def features_for_batch(
    batch: ImageBatch,
    config: RunConfig,
    backbone=None,
    progress: bool | Progress = True,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
    stats: dict[str, float] | None = None,
) -> FeatureSet:
    """Backbone features of a decoded batch (``FeatureExtractor.transform_batch``).

    cache: None (auto) uses the cache unless ``backbone`` is given (a passed model's weights
    cannot be identified; see ``features.cache.CacheConfig``); True/False force it.
    stats: when given, receives ``features_cached`` / ``features_extracted`` counts.
    """
    # "auto" tokens are resolved for this batch here, so a fixed-K batch is held in float16
    # from the start instead of next to a float32 copy
    held = resolve_token_dtype(config.features.token_dtype, len(batch), config.engine.references)
    config = replace(config, features=replace(config.features, token_dtype=held))
    extractor_cls = FeatureExtractor
    if config.engine.backend == "ray":  # the backbone runs on the cluster's workers (docs/ray.md)
        from codegraph_ad.engine.ray_features import RayFeatureExtractor as extractor_cls
    extractor = extractor_cls.from_config(config, backbone=backbone, cache=cache, cache_dir=cache_dir,
                                          progress=progress)
    return extractor.transform_batch(batch, stats)


def score_features(features: FeatureSet, config: RunConfig = RunConfig(),
                   progress: bool | Progress = False) -> ScoreResult:
    """Score a batch whose features are already extracted."""
    check_batch_size(features.n_images)
    with thread_budget(config.engine.threads):
        return make_method(config, progress).fit_predict(features)


def _read_and_extract(paths: Sequence[Path], root: Path | None, config: RunConfig, backbone: Any,
                      on_error: Literal["stop", "skip"], progress: Any, cache: bool | None,
                      cache_dir: str | Path | None, timings: dict[str, float]) -> tuple[ImageBatch, FeatureSet]:
    """Decode the files, then their features (cache first); both stages timed into ``timings``."""
    t0 = time.perf_counter()
    batch = load_batch(paths, config.features.image_size, root, on_error, progress)
    if len(batch) == 0:
        raise InputError("none of the images could be read")
    timings["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache_stats: dict[str, float] = {}
    feats = features_for_batch(batch, config, backbone, progress, cache, cache_dir, cache_stats)
    timings["features_s"] = time.perf_counter() - t0
    timings.update(cache_stats)
    return batch, feats


def _run(
    paths: Sequence[Path],
    root: Path | None,
    out_dir: str | Path | None,
    config: RunConfig,
    overwrite: bool,
    on_error: Literal["stop", "skip"],
    progress: bool | Progress,
    overlays: bool,
    backbone,
    mask_paths: list[tuple[Path, ...]] | None = None,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
    keep_features: bool = False,
    masks: bool = True,
) -> RunResult:
    """keep_features: hand the features to the caller's write_run (evaluate writes itself)."""
    check_batch_size(len(paths))
    progress = Progress.of(progress)  # one display for the run: a bar per stage
    timings: dict[str, float] = {}
    # An interrupted run leaves no folder it created and no manifest (see output_folder).
    with output_folder(out_dir, overwrite) as out:
        with thread_budget(config.engine.threads):
            batch, feats = _read_and_extract(paths, root, config, backbone, on_error, progress, cache, cache_dir,
                                             timings)
            check_batch_size(len(batch))
            t0 = time.perf_counter()
            scores = make_method(config, progress).fit_predict(feats)
            timings["scoring_s"] = time.perf_counter() - t0
        result = RunResult(batch.names, batch.paths, scores, config, timings, batch.original_sizes, out,
                           batch.skipped, used_backbone(config, backbone))
        if config.reference.store_reference and (out is not None or keep_features):
            result.features = feats
        if out is not None:
            if mask_paths is not None and batch.skipped:
                keep = {p: mp for p, mp in zip(paths, mask_paths)}
                mask_paths = [keep[p] for p in batch.paths]
            with RunWriter.replace(out) as writer:
                write_run(result, writer, mask_paths, overlays, progress, masks=masks)
    return result


def write_run(result: RunResult, out: Path | RunWriter, mask_paths=None, overlays: bool = True,
              progress: bool | Progress = True, extra_rows: list[dict[str, Any]] | None = None,
              report: bool = True, masks: bool = True) -> None:
    """Write every output, then the manifest last: its presence marks a complete run.

    progress: the run's Progress (one "writing" bar: the maps, then the rest) or a bool.
    mask_paths: ground-truth mask files per image, outlined on the overlays (evaluate).
    masks: write ``masks/<name>.png`` for every flagged image, cut at
    ``result.pixel_decision`` or, when that is None, at a threshold fitted on the batch's
    maps (stored in ``result.pixel_decision`` and scores.json).

    out: a ``RunWriter`` (from ``RunWriter.replace``), or a folder, whose earlier outputs
    are then replaced all-or-nothing.
    """
    if not isinstance(out, RunWriter):
        with RunWriter.replace(Path(out)) as writer:
            write_run(result, writer, mask_paths, overlays, progress, extra_rows, report, masks)
        return
    with Progress.of(progress).stage("writing", len(result.names) + 1, "files") as bar:
        _write_outputs(result, out, mask_paths, overlays, extra_rows, report, bar, masks)


def _write_masks(result: RunResult, writer: RunWriter, samples: list[np.ndarray],
                 config: PseudoMaskConfig) -> PixelDecision:
    """The flagged images' masks, at the given pixel threshold or one fitted on ``samples``
    (``map_sample`` of every map, as ``codegraph-ad pseudomask`` draws them from the folder).

    Maps are upsampled again rather than held: the flagged images of a batch of camera
    images would not fit in memory, and the upsampling is deterministic.
    """
    pixel = result.pixel_decision
    if pixel is None:
        pixel = PixelDecision(fit_threshold(np.concatenate(samples), config), config, "batch")
    s = result.scores
    for i in np.flatnonzero(result.decision.anomalous):
        amap = upsample_map(s.patch_scores[i], s.grid, result.original_sizes[i])
        writer.mask(result.names[i], pixel.mask(amap))
    return pixel


def _write_outputs(result: RunResult, writer: RunWriter, mask_paths, overlays: bool,
                   extra_rows: list[dict[str, Any]] | None, report: bool, bar: Progress, masks: bool) -> None:
    """write_run's body: maps and overlays one image at a time (a unit of ``bar`` each),
    then the masks, scores, arrays, graph files, the manifest and report.html (the last unit)."""
    from codegraph_ad.report.overlay import file_overlay, shared_scale

    t0 = time.perf_counter()
    s = result.scores
    scale = shared_scale(s.patch_scores.numpy())
    n = len(result.names)
    fit_here = masks and result.pixel_decision is None
    pixel_config = PseudoMaskConfig()  # the pseudo-mask defaults; `codegraph-ad pseudomask` tunes them
    samples: list[np.ndarray] = []
    for i in range(n):
        amap = upsample_map(s.patch_scores[i], s.grid, result.original_sizes[i])
        writer.map(result.names[i], amap)
        if fit_here:
            samples.append(map_sample(amap, i, n, pixel_config))
        if overlays:
            truth = mask_paths[i] if mask_paths is not None else ()
            writer.overlay(result.names[i], file_overlay(result.paths[i], amap, scale, truth))
        bar.advance()
    if masks:
        result.pixel_decision = _write_masks(result, writer, samples, pixel_config)
    rows = result.score_rows()
    if extra_rows is not None:
        for r, e in zip(rows, extra_rows):
            r.extra.update(e)
    meta = {"config": config_to_dict(result.config), "versions": versions(), "timings": result.timings,
            "skipped": [{"path": str(p), "reason": why} for p, why in result.skipped],
            "decision": result.decision.to_dict()}
    if masks:
        meta["pixel_decision"] = result.pixel_decision.to_dict()
    meta["diagnostics"] = s.diagnostics
    writer.scores(rows, meta, result.groups())
    writer.array(PATCH_SCORES, s.patch_scores.numpy().astype(np.float32))
    if s.excluded is not None:
        writer.array(EXCLUDED, s.excluded.numpy())
        if s.diagnostics.get("subsets"):
            from codegraph_ad.report.graph_files import write_graph_files

            write_graph_files(writer.root, result.names, result.paths, s.excluded.numpy(), s.grid, s.diagnostics)
    if result.features is not None and result.config.reference.store_reference:
        f = result.features
        writer.reference(f.layers.numpy(), None if f.cls is None else f.cls.numpy(),
                         result.config.reference.reference_dtype)
    result.features = None
    result.timings["write_s"] = time.perf_counter() - t0
    writer.finish(Manifest(result.names, [str(p) for p in result.paths], tuple(s.grid),
                           config_to_dict(result.config), versions(), result.timings,
                           original_sizes=[tuple(x) for x in result.original_sizes], backbone=result.backbone))
    if report:
        _write_report(writer.root)


def _write_report(out: Path) -> None:
    """report.html is built from the finished files; a failure costs the page, not the results."""
    import warnings

    from codegraph_ad.report.html import write_report

    try:
        write_report(out)
    except Exception as exc:  # noqa: BLE001 - the run's results are complete and kept
        warnings.warn(f"{out}: report.html could not be written ({exc.__class__.__name__}: {exc}); "
                      f"run `codegraph-ad report {out}` to retry", stacklevel=2)


def detect(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path | None,
    config: RunConfig = RunConfig(),
    overwrite: bool = False,
    on_error: Literal["stop", "skip"] = "stop",
    progress: bool | Progress = True,
    overlays: bool = True,
    backbone=None,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
    root: str | Path | None = None,
    masks: bool = True,
) -> RunResult:
    """Score every image of a folder (recursive) or of a list of files as one batch.

    cache / cache_dir: the per-image feature cache (None: on unless ``backbone`` is
    given; the folder defaults to ``$CODEGRAPH_AD_CACHE/features`` or
    ``~/.cache/codegraph-ad/features``). Reruns extract only images not seen before.
    root: for a list of files, the folder the output names are relative to (default: the
    bare file names); replaying a run from its run.json needs it to name the images alike.
    masks: write ``masks/<name>.png`` for every flagged image (docs/decisions.md).
    """
    if isinstance(inputs, (str, Path)) and Path(inputs).is_file():  # a batch method needs a batch
        raise InputError(f"{inputs}: is a file; detect scores a folder of images (or a list of files) as one batch")
    paths, root = resolve_inputs(inputs, root)
    return _run(paths, root, out_dir, config, overwrite, on_error, progress, overlays, backbone,
                cache=cache, cache_dir=cache_dir, masks=masks)


def evaluate(
    category_dir: str | Path,
    out_dir: str | Path | None,
    config: RunConfig = RunConfig(),
    eval_size: int = 256,
    overwrite: bool = False,
    progress: bool | Progress = True,
    overlays: bool = True,
    backbone=None,
    samples: list[LabelledSample] | None = None,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
    masks: bool = True,
) -> EvaluationResult:
    """Run on an MVTec-layout category and compute image and pixel metrics against its labels.

    An occupied ``out_dir`` is refused before any computing; cache and mask options as in
    ``detect`` (the masks are the run's own, not the ground truth the metrics use).
    """
    from codegraph_ad.evaluation import batch_metrics, eval_maps, eval_masks

    samples = samples if samples is not None else read_mvtec_category(category_dir)
    progress = Progress.of(progress)
    paths = [s.image_path for s in samples]
    mask_paths = [s.mask_paths for s in samples]
    root = Path(category_dir) / "test" if samples and (Path(category_dir) / "test").is_dir() else None
    with output_folder(out_dir, overwrite) as out:
        run = _run(paths, root, None, config, overwrite, "stop", progress, overlays, backbone,
                   cache=cache, cache_dir=cache_dir, keep_features=out is not None)
        t0 = time.perf_counter()
        labels = np.array([s.label for s in samples])
        sc = run.scores
        maps = eval_maps(sc.patch_scores, sc.grid, config.features.image_size, eval_size)
        truth = eval_masks(samples, run.original_sizes, eval_size)
        metrics: dict[str, Any] = {**batch_metrics(sc.image_scores, maps, truth, labels), "eval_size": eval_size}
        run.timings["metrics_s"] = time.perf_counter() - t0
        metrics["timings"] = run.timings
        if out is not None:
            run.out_dir = out
            extra = [{"label": int(x.label), "defect": x.defect, "mask_paths": [str(p) for p in x.mask_paths]}
                     for x in samples]
            with RunWriter.replace(out) as writer:
                # metrics.json before write_run, whose manifest must be the last file written.
                writer.json(METRICS, {"metrics": metrics, "config": config_to_dict(config), "versions": versions()})
                write_run(run, writer, mask_paths, overlays, progress, extra_rows=extra, masks=masks)
    return EvaluationResult(run, metrics)


def _check_reference_backbone(folder: RunFolder, config: RunConfig) -> None:
    """Refuse to score new images with other weights than the run's: their features would
    not be comparable with the stored ones."""
    where = folder.root / MANIFEST
    used = folder.backbone
    if used is None:
        raise InputError(f"{where}: the run records no backbone identity; it cannot serve as a reference")
    if used.source == "custom object":
        raise InputError(f"{where}: the run used a custom backbone object ({used.model}); new images cannot be "
                         "extracted with the same weights from the folder. Score them with "
                         "methods.reference.ReferenceSet.from_run(run).score_new(features) on features from that model")
    checkpoint = config.features.checkpoint
    if used.source == "checkpoint" and (checkpoint is None or not Path(checkpoint).expanduser().is_file()):
        raise InputError(f"{where}: the run used checkpoint {checkpoint!r}, which is not found here")
    now = used_backbone(config)
    if used.source == "checkpoint":
        same = now.checkpoint_sha256 == used.checkpoint_sha256
    else:
        same = (now.name, now.source, now.model) == (used.name, used.source, used.model)
    if not same:
        raise InputError(f"{where}: the run used backbone {used.to_dict()}, and its configuration builds "
                         f"{now.to_dict()} here; features of other weights cannot be compared with the stored ones")


def _reference_decision(folder: Any, config: RunConfig, new_scores: np.ndarray) -> Decision:
    """New images are judged by the reference run's threshold, not one fitted on themselves
    (a handful of new images, or a stream of one, has no normal mode to fit): the threshold
    the run stored, else the run's decision refitted on its stored image scores."""
    from dataclasses import replace as _replace

    stored = folder.decision
    if stored is not None and stored.get("threshold") is not None:
        ref = Decision(np.zeros(0, dtype=bool), float(stored["threshold"]), str(stored.get("rule", "fixed")),
                       stored.get("false_alarm_rate"), stored.get("normal_center"), stored.get("normal_scale"),
                       stored.get("normal_count"))
    else:
        ref = decide([r.score for r in folder.score_rows()], config.decision)
    return _replace(ref, anomalous=np.asarray(new_scores, dtype=np.float64) > ref.threshold)


def _reference_pixel_decision(folder: RunFolder) -> PixelDecision:
    """The pixel threshold new images' masks are cut at: the one the reference run stored,
    else one fitted on its maps (a run written before masks, or with ``--no-masks``), as
    ``codegraph-ad pseudomask`` would fit it. A few new images are no batch to fit on."""
    from dataclasses import replace as _replace

    stored = folder.pixel_decision
    if stored is not None:
        try:
            return _replace(PixelDecision.from_dict(stored), source="reference")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{folder.root}: malformed pixel_decision in scores.json "
                             f"({exc.__class__.__name__}: {exc})") from exc
    config = PseudoMaskConfig()
    fit = batch_fit((folder.load_map(i) for i in range(len(folder))), len(folder), config)
    return PixelDecision(fit, config, "reference")


def score_new(
    run_dir: str | Path,
    images: str | Path | Sequence[str | Path],
    out_dir: str | Path | None,
    overwrite: bool = False,
    on_error: Literal["stop", "skip"] = "stop",
    progress: bool = True,
    overlays: bool = True,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
    root: str | Path | None = None,
    masks: bool = True,
) -> RunResult:
    """Score new images against a finished run without recomputing its batch.

    Each image of ``images`` (a folder, recursive, or a list of files; one is enough) is
    scored against the reference set the run stored (``reference.npz``: its images' features,
    minus the patches CoDeGraph excluded) with the run's configuration and backbone
    (methods/reference.py). ``out_dir`` gets the outputs of ``detect``: maps, overlays,
    scores.csv/json, report.html and run.json; with ``masks``, the masks of the flagged new
    images, cut at the run's pixel threshold (as their flags use its image threshold). Cache
    options and ``root`` as in ``detect``.
    """
    from dataclasses import replace

    from codegraph_ad.methods.reference import ReferenceSet

    folder = read_run_folder(run_dir)
    if out_dir is not None and Path(out_dir).resolve() == folder.root.resolve():
        raise InputError(f"{out_dir}: is the reference run's folder; write the new scores elsewhere")
    reference = ReferenceSet.from_run(folder)
    config = reference.config
    _check_reference_backbone(folder, config)
    pixel = _reference_pixel_decision(folder) if masks and out_dir is not None else None
    paths, root = resolve_inputs(images, root)
    timings: dict[str, float] = {}
    with output_folder(out_dir, overwrite) as out:
        with thread_budget(config.engine.threads):
            batch, feats = _read_and_extract(paths, root, config, None, on_error, progress, cache, cache_dir,
                                             timings)
            t0 = time.perf_counter()
            scores = reference.score_new(feats)
            timings["scoring_s"] = time.perf_counter() - t0
        # the outputs hold no reference of their own: new images are scored against the run's
        stored = replace(config, reference=replace(config.reference, store_reference=False))
        result = RunResult(batch.names, batch.paths, scores, stored, timings, batch.original_sizes, out,
                           batch.skipped, folder.backbone,
                           decision=_reference_decision(folder, config, scores.image_scores),
                           pixel_decision=pixel)
        if out is not None:
            with RunWriter.replace(out) as writer:
                write_run(result, writer, None, overlays, progress, masks=masks)
    return result
