"""One seeded training loop for every per-image model (patch head, CLIP adapter, prompts).

Backbone tokens are extracted once and kept fixed; only the small model is optimised, which
is why training takes seconds to minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from codegraph_ad.distill.config import TrainConfig
from codegraph_ad.distill.losses import segmentation_loss


def fit_model(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
    desc: str = "training",
    forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> list[float]:
    """Minimise focal + Dice of ``model(inputs[b])`` (probabilities) against ``targets[b]``.

    inputs: ``(N, ...)`` per-image inputs; targets: ``(N, M)`` patch targets in [0, 1].
    Returns the mean loss of each epoch. Shuffling uses its own generator seeded with
    ``config.seed``, so two runs with the same seed and inputs give the same model.
    """
    if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
        raise ValueError(f"inputs ({inputs.shape[0]}) and targets ({targets.shape[0]}) must have the same, "
                         "non-zero number of images")
    if config.epochs < 1 or config.batch_images < 1:
        raise ValueError(f"epochs and batch_images must be >= 1, got {config.epochs} and {config.batch_images}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    forward = forward or (lambda m, x: m(x))
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    n = inputs.shape[0]
    history: list[float] = []
    model.train()
    bar = tqdm(range(config.epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, config.batch_images):
            idx = order[start:start + config.batch_images]
            p = forward(model, inputs[idx])
            loss = segmentation_loss(p, targets[idx], config.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / n)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history
