"""CLI subcommands ``pseudomask``, ``distill``, ``predict``, ``export`` and ``winclip`` (registered by cli.py)."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from codegraph_ad.backbones.clip import ClipConfig
from codegraph_ad.config import FeatureConfig, PseudoMaskConfig, config_from_dict
from codegraph_ad.distill.config import (
    DistillCommandConfig,
    LossConfig,
    TrainConfig,
    WinClipCommandConfig,
)
from codegraph_ad.errors import InputError
from codegraph_ad.methods.winclip import WinClipConfig
from codegraph_ad.options import add_config_options, config_from_args

# The option names the commands had before their options were generated (issue 24).
PSEUDO_ALIASES = {(PseudoMaskConfig, "q"): ("--q",), (PseudoMaskConfig, "beta"): ("--beta",),
                  (PseudoMaskConfig, "scope"): ("--scope",)}
WINCLIP_ALIASES = {(WinClipConfig, "object_name"): ("--object",)}
# distill: the head's sections take the short names (--backbone, --degrees, --epochs), the
# CLIP model's carry "clip" / "text"; the pseudo-mask fields carry "pseudo" (--seed is the
# training seed) with their old short names as aliases.
DISTILL_PREFIXES: dict[type | str, str] = {"pseudo": "pseudo", "head": "", "head.train": "", "text": "",
                                           "text.clip": "clip", "text.train": "text"}
DISTILL_SKIP = ("text.kind",)  # set by --model
_TRAIN_LEAVES = [*(f"{f.name}" for f in fields(TrainConfig) if f.name != "loss"),
                 *(f"loss.{f.name}" for f in fields(LossConfig))]
# A training option (--epochs) and --layers set the chosen model's field, whichever it is.
DISTILL_LINKS = {**{f"head.train.{n}": (f"text.train.{n}",) for n in _TRAIN_LEAVES},
                 "head.features.layers": ("text.clip.layers",)}
WINCLIP_PREFIXES: dict[type | str, str] = {ClipConfig: "clip"}


def pseudo_from_args(a: argparse.Namespace) -> PseudoMaskConfig:
    """The pseudo-mask settings of a parsed ``pseudomask`` command, validated."""
    return config_from_args(a).validate()


def cmd_pseudomask(a: argparse.Namespace) -> int:
    from codegraph_ad.distill.pseudomask_run import SUMMARY, write_pseudomasks

    s = write_pseudomasks(a.run_dir, a.out, pseudo_from_args(a), overwrite=a.overwrite, progress=not a.quiet)
    n_pos = sum(r["has_anomaly"] for r in s.rows)
    print(f"{len(s.rows)} masks written under {a.out / 'ground_truth'} ({n_pos} with anomalous pixels)")
    print(f"summary: {a.out / SUMMARY}")
    return 0


def _run_features(run_dir: Path) -> FeatureConfig:
    """The feature config of the batch run, so the head sees the tokens the run scored."""
    from codegraph_ad.io.run_folder import read_run_folder

    feats = read_run_folder(run_dir).config.get("features")
    return config_from_dict(FeatureConfig, feats) if isinstance(feats, dict) else FeatureConfig()


def distill_config_from_args(a: argparse.Namespace) -> DistillCommandConfig:
    """defaults < the run's features (model head) < --config file < options."""
    job: DistillCommandConfig = config_from_args(a)
    if job.model == "head":  # the head sees the tokens the run scored unless told otherwise
        defaults = DistillCommandConfig()
        run_head = replace(defaults.head, features=_run_features(a.run_dir))
        job = config_from_args(a, base=replace(defaults, head=run_head))
    job.pseudo.validate()
    return job


def cmd_distill(a: argparse.Namespace) -> int:
    if Path(a.out).exists() and not a.overwrite:
        raise InputError(f"{a.out}: model file exists; pass --overwrite to replace it")
    job = distill_config_from_args(a)
    if job.model == "head":
        from codegraph_ad.distill.distill_head import train_patch_head

        _, report = train_patch_head(a.run_dir, a.out, job.head, a.masks, job.pseudo, progress=not a.quiet,
                                     threads=a.threads)
    else:
        from codegraph_ad.distill.clip.train import train_text_model

        cfg = job.trained()
        if not cfg.clip.checkpoint:
            raise InputError(f"--model {job.model} needs --clip-checkpoint (a local CLIP weights file)")
        _, report = train_text_model(a.run_dir, a.out, cfg, a.masks, job.pseudo, progress=not a.quiet,
                                     threads=a.threads)
    src = report.source
    print(f"trained on {src['n_images']} images ({src['n_positive_images']} with anomalous targets, "
          f"{src['kind']}); loss {report.history[0]:.4f} -> {report.history[-1]:.4f} in {report.timings['train_s']:.1f} s")
    print(f"model written to {a.out}")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from codegraph_ad.distill.predict import predict_images

    res = predict_images(a.model, a.images, a.out, overwrite=a.overwrite, on_error="skip" if a.skip_bad else "stop",
                         overlays=not a.no_overlays, progress=not a.quiet, threads=a.threads)
    t = res.mean_times()
    order = res.scores.argsort()[::-1]
    print(f"{'score':>8}  image")
    for i in order[:20]:
        print(f"{res.scores[i]:8.4f}  {res.names[i]}")
    if len(order) > 20:
        print(f"... {len(order) - 20} more in scores.csv")
    print(f"per image: {t['total_s']:.3f} s total, {t['backbone_s']:.3f} s backbone, {t['head_s'] * 1e3:.1f} ms head")
    print(f"results written to {a.out}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from codegraph_ad.distill.export import export_onnx

    res = export_onnx(a.model, a.out, check=not a.no_check, overwrite=a.overwrite, threads=a.threads)
    h, w = res.grid
    print(f"exported {a.model} -> {res.path} ({res.size_bytes / 2**20:.1f} MiB): image (1, 3, {res.image_size}, "
          f"{res.image_size}) -> probs (1, {h}, {w}), score (1,)")
    if res.max_abs_diff is not None:
        print(f"check: max |ONNX - PyTorch| = {res.max_abs_diff:.1e} on one image")
    print("run it without PyTorch with codegraph_ad/distill/onnx_runtime.py (numpy, Pillow, onnxruntime)")
    return 0


def cmd_winclip(a: argparse.Namespace) -> int:
    from codegraph_ad.backbones.clip import load_clip
    from codegraph_ad.distill.clip.detector import WinClipDetector
    from codegraph_ad.distill.predict import predict_images

    cfg: WinClipCommandConfig = config_from_args(a)
    if not cfg.clip.checkpoint:
        raise InputError("winclip needs --clip-checkpoint (a local CLIP weights file)")
    detector = WinClipDetector(load_clip(cfg.clip, a.threads), None, cfg.winclip)
    res = predict_images(detector, a.images, a.out, overwrite=a.overwrite, on_error="skip" if a.skip_bad else "stop",
                         overlays=not a.no_overlays, progress=not a.quiet, threads=a.threads)
    print(f"{len(res.names)} images scored; per image {res.mean_times()['total_s']:.3f} s; results written to {a.out}")
    return 0


def _job_file(root: str) -> str:
    return f"JSON configuration: config_to_dict of a {root}; options given here override it"


def _outputs(p: argparse.ArgumentParser, overlays: bool = False) -> None:
    if overlays:
        p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
        p.add_argument("--no-overlays", action="store_true", help="skip heatmap overlay PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pseudomask", help="binary pseudo-masks from a run's anomaly maps (truncated GMM)")
    p.add_argument("run_dir", type=Path, help="a finished detect/evaluate/predict output folder")
    p.add_argument("--out", required=True, type=Path, help="folder for ground_truth/<defect>/<stem>_mask.png")
    _outputs(p)
    add_config_options(p, PseudoMaskConfig,
                       config_help="JSON configuration: config_to_dict output, or an earlier pseudomasks.json "
                                   "(its \"config\"); options given here override it")
    p.set_defaults(func=cmd_pseudomask)

    p = sub.add_parser("distill", help="train a single-image model on a run's images and pseudo-masks")
    p.add_argument("run_dir", type=Path, help="a finished detect/evaluate output folder")
    p.add_argument("--out", required=True, type=Path, help="model file to write (e.g. head.pt)")
    p.add_argument("--masks", type=Path, default=None,
                   help="train on these masks (MVTec category or pseudomask folder) instead of fresh pseudo-masks")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    _outputs(p)
    add_config_options(p, DistillCommandConfig, skip=DISTILL_SKIP, prefixes=DISTILL_PREFIXES,
                       aliases=PSEUDO_ALIASES, links=DISTILL_LINKS, config_help=_job_file("DistillCommandConfig"),
                       description="the head's backbone fields (--backbone ... --batch-size) default to "
                                   "the run's features, not to the values shown")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("predict", help="score images one at a time with a model from `distill`")
    p.add_argument("model", type=Path, help="model file written by `distill`")
    p.add_argument("images", type=Path, help="an image file or a folder (recursive)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    _outputs(p, overlays=True)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a `distill` patch-head model as one ONNX graph (backbone + head)")
    p.add_argument("model", type=Path, help="model file written by `distill` (--model head)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    p.add_argument("--out", required=True, type=Path, help="file to write (e.g. head.onnx)")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing the exported map with the PyTorch detector's on one image")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the check (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("winclip", help="WinCLIP zero-shot scoring with a local CLIP checkpoint, one image at a time")
    p.add_argument("images", type=Path, help="an image file or a folder (recursive)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    _outputs(p, overlays=True)
    add_config_options(p, WinClipCommandConfig, prefixes=WINCLIP_PREFIXES, aliases=WINCLIP_ALIASES,
                       description="--clip-checkpoint is required", config_help=_job_file("WinClipCommandConfig"))
    p.set_defaults(func=cmd_winclip)
