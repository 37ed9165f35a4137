"""CLI subcommands ``pseudomask``, ``distill`` and ``predict`` (registered by cli.py)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from codegraph_ad.backbones.clip import ClipConfig
from codegraph_ad.config import FeatureConfig, config_from_dict
from codegraph_ad.distill.config import (
    DistillConfig,
    HeadConfig,
    PseudoMaskConfig,
    TextModelConfig,
    TrainConfig,
)
from codegraph_ad.errors import InputError
from codegraph_ad.methods.winclip import WinClipConfig

_PM = PseudoMaskConfig()
_HEAD = HeadConfig()
_TRAIN = TrainConfig()


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_pseudomask_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--q", type=float, default=_PM.q, help="truncation quantile of the mixture fit")
    p.add_argument("--beta", type=float, default=_PM.beta, help="tail probability per component: mu + z(1-beta) sigma")
    p.add_argument("--scope", choices=["image", "batch"], default=_PM.scope,
                   help="fit one mixture per map (image) or one for the whole run (batch)")


def _pseudo_from_args(a: argparse.Namespace) -> PseudoMaskConfig:
    return PseudoMaskConfig(q=a.q, beta=a.beta, scope=a.scope).validate()


def cmd_pseudomask(a: argparse.Namespace) -> int:
    from codegraph_ad.distill.pseudomask_run import SUMMARY, write_pseudomasks

    s = write_pseudomasks(a.run_dir, a.out, _pseudo_from_args(a), overwrite=a.overwrite, progress=not a.quiet)
    n_pos = sum(r["has_anomaly"] for r in s.rows)
    print(f"{len(s.rows)} masks written under {a.out / 'ground_truth'} ({n_pos} with anomalous pixels)")
    print(f"summary: {a.out / SUMMARY}")
    return 0


def _run_features(run_dir: Path) -> FeatureConfig:
    """The feature config of the batch run, so the head sees the tokens the run scored."""
    from codegraph_ad.io.run_folder import read_run_folder

    feats = read_run_folder(run_dir).config.get("features")
    return config_from_dict(FeatureConfig, feats) if isinstance(feats, dict) else FeatureConfig()


def _features_from_args(a: argparse.Namespace) -> FeatureConfig:
    f = _run_features(a.run_dir)
    overrides = {"backbone": a.backbone, "image_size": a.image_size, "checkpoint": a.checkpoint,
                 "batch_size": a.batch_size, "layers": _ints(a.layers) if a.layers else None}
    f = replace(f, **{k: v for k, v in overrides.items() if v is not None})
    return replace(f, final_norm=True) if a.final_norm else f


def _train_from_args(a: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    return replace(base, epochs=a.epochs or base.epochs, lr=a.lr or base.lr, seed=a.seed)


def cmd_distill(a: argparse.Namespace) -> int:
    if Path(a.out).exists() and not a.overwrite:
        raise InputError(f"{a.out}: model file exists; pass --overwrite to replace it")
    pseudo = _pseudo_from_args(a)
    if a.model == "head":
        from codegraph_ad.distill.distill_head import train_patch_head

        cfg = DistillConfig(features=_features_from_args(a), head=HeadConfig(_ints(a.degrees), a.hidden),
                            train=_train_from_args(a, _TRAIN))
        _, report = train_patch_head(a.run_dir, a.out, cfg, a.masks, pseudo, progress=not a.quiet, threads=a.threads)
    else:
        from codegraph_ad.distill.clip.train import train_text_model

        if not a.clip_checkpoint:
            raise InputError(f"--model {a.model} needs --clip-checkpoint (a local CLIP weights file)")
        base = TextModelConfig()
        clip = ClipConfig(arch=a.clip_arch, checkpoint=a.clip_checkpoint, image_size=a.clip_image_size,
                          layers=_ints(a.layers) if a.layers else None)
        cfg = replace(base, kind=a.model, clip=clip, train=_train_from_args(a, base.train))
        _, report = train_text_model(a.run_dir, a.out, cfg, a.masks, pseudo, progress=not a.quiet, threads=a.threads)
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


def cmd_winclip(a: argparse.Namespace) -> int:
    from codegraph_ad.backbones.clip import load_clip
    from codegraph_ad.distill.clip.detector import WinClipDetector
    from codegraph_ad.distill.predict import predict_images

    clip = ClipConfig(arch=a.clip_arch, checkpoint=a.clip_checkpoint, image_size=a.clip_image_size)
    detector = WinClipDetector(load_clip(clip, a.threads), a.object, WinClipConfig(scales=_ints(a.scales)))
    res = predict_images(detector, a.images, a.out, overwrite=a.overwrite, on_error="skip" if a.skip_bad else "stop",
                         overlays=not a.no_overlays, progress=not a.quiet, threads=a.threads)
    print(f"{len(res.names)} images scored; per image {res.mean_times()['total_s']:.3f} s; results written to {a.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pseudomask", help="binary pseudo-masks from a run's anomaly maps (truncated GMM)")
    p.add_argument("run_dir", type=Path, help="a finished detect/evaluate/predict output folder")
    p.add_argument("--out", required=True, type=Path, help="folder for ground_truth/<defect>/<stem>_mask.png")
    _add_pseudomask_options(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_pseudomask)

    p = sub.add_parser("distill", help="train a single-image model on a run's images and pseudo-masks")
    p.add_argument("run_dir", type=Path, help="a finished detect/evaluate output folder")
    p.add_argument("--out", required=True, type=Path, help="model file to write (e.g. head.pt)")
    p.add_argument("--model", choices=["head", "aprilgan", "anomalyclip"], default="head",
                   help="head: MLP on frozen ViT tokens; aprilgan / anomalyclip: CLIP-based (need --clip-checkpoint)")
    p.add_argument("--masks", type=Path, default=None,
                   help="train on these masks (MVTec category or pseudomask folder) instead of fresh pseudo-masks")
    _add_pseudomask_options(p)
    p.add_argument("--backbone", default=None, help="head backbone (default: the run's)")
    p.add_argument("--checkpoint", default=None, help="local weights of an official backbone")
    p.add_argument("--image-size", type=int, default=None, help="head input side (default: the run's)")
    p.add_argument("--layers", default=None, help="1-based blocks, comma separated (default: the run's / CLIP's)")
    p.add_argument("--final-norm", action="store_true")
    p.add_argument("--batch-size", type=int, default=None, help="images per backbone call")
    p.add_argument("--degrees", default=",".join(map(str, _HEAD.degrees)), help="LNAMD degrees of the head input")
    p.add_argument("--hidden", type=int, default=_HEAD.hidden, help="MLP hidden width (0: linear head)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=_TRAIN.seed)
    p.add_argument("--clip-arch", default=ClipConfig().arch, help="open_clip model name for aprilgan/anomalyclip")
    p.add_argument("--clip-checkpoint", default=None, help="local CLIP weights (OpenAI .pt or open_clip file)")
    p.add_argument("--clip-image-size", type=int, default=ClipConfig().image_size)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("predict", help="score images one at a time with a model from `distill`")
    p.add_argument("model", type=Path, help="model file written by `distill`")
    p.add_argument("images", type=Path, help="an image file or a folder (recursive)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("winclip", help="WinCLIP zero-shot scoring with a local CLIP checkpoint, one image at a time")
    p.add_argument("images", type=Path, help="an image file or a folder (recursive)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--clip-checkpoint", required=True, help="local CLIP weights (OpenAI .pt or open_clip file)")
    p.add_argument("--clip-arch", default=ClipConfig().arch, help="open_clip model name")
    p.add_argument("--clip-image-size", type=int, default=ClipConfig().image_size)
    p.add_argument("--object", default=WinClipConfig.object_name, help="noun in the prompts, e.g. 'bottle'")
    p.add_argument("--scales", default=",".join(map(str, WinClipConfig().scales)), help="window sides in patches")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_winclip)
