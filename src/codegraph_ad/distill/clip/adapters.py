"""The two trainable text-based models; both map ``(B, L, M, C)`` layer tokens to ``(B, M)``.

APRIL-GAN: one linear map per layer from ``ln_post`` patch tokens to the text space, scored
against fixed prompt-ensemble embeddings; the per-layer maps are averaged.
AnomalyCLIP: patch tokens go through CLIP's own frozen ``ln_post`` + projection; what is
learned is the text: object-agnostic context vectors for "[V] object" and "[W] damaged object".
Simplified from the paper: no DPAM attention change in the image tower, no deep (per-layer)
text tokens; the learned context sits in the input embedding only.
"""

from __future__ import annotations

import torch
from torch import nn

from codegraph_ad.methods.clip_text import encode_tokens, state_probability


class AprilGanAdapter(nn.Module):
    """Per-layer ``Linear(C -> D)`` on patch tokens; ``text: (2, D)`` fixed state embeddings."""

    def __init__(self, n_layers: int, in_dim: int, embed_dim: int, text: torch.Tensor, temperature: float) -> None:
        super().__init__()
        if text.shape != (2, embed_dim):
            raise ValueError(f"text embeddings must be (2, {embed_dim}), got {tuple(text.shape)}")
        self.linears = nn.ModuleList(nn.Linear(in_dim, embed_dim) for _ in range(n_layers))
        self.register_buffer("text", text.detach().clone().float())
        self.temperature = float(temperature)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: (B, L, M, C)`` -> abnormal probability ``(B, M)``, mean over layers."""
        if tokens.shape[1] != len(self.linears):
            raise ValueError(f"expected {len(self.linears)} layers of tokens, got {tokens.shape[1]}")
        probs = [state_probability(lin(tokens[:, i]), self.text, self.temperature) for i, lin in enumerate(self.linears)]
        return torch.stack(probs).mean(dim=0)


class PromptLearner(nn.Module):
    """Learnable context vectors for the normal and abnormal prompt; the CLIP stays frozen.

    The frozen CLIP is held outside the module tree (``clip`` is not a registered submodule)
    so that the state dict, and the saved model file, hold only the learned context.
    """

    def __init__(self, clip_model: nn.Module, tokenizer, n_ctx: int, object_name: str, temperature: float,
                 proj: torch.Tensor) -> None:
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        width = int(clip_model.token_embedding.weight.shape[1])
        self._clip = (clip_model,)  # a tuple: not registered, not saved
        placeholder = " ".join(["X"] * n_ctx)
        ids = tokenizer([f"{placeholder} {object_name}.", f"{placeholder} damaged {object_name}."])
        self.register_buffer("ids", ids, persistent=False)
        self.ctx = nn.Parameter(torch.randn(2, n_ctx, width) * 0.02)
        self.register_buffer("proj", proj.detach().clone().float(), persistent=False)
        self.temperature = float(temperature)
        self._cached: torch.Tensor | None = None

    def text_features(self) -> torch.Tensor:
        """``(2, D)`` unit embeddings of the two learned prompts (cached outside training)."""
        if not self.training and self._cached is not None:
            return self._cached
        feats = nn.functional.normalize(encode_tokens(self._clip[0], self.ids, self.ctx), dim=-1)
        if not self.training:
            self._cached = feats.detach()
        return feats

    def train(self, mode: bool = True) -> PromptLearner:
        self._cached = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._cached = None
        return super().load_state_dict(*args, **kwargs)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: (B, L, M, C)`` ``ln_post`` tokens -> abnormal probability ``(B, M)``, mean over layers."""
        text = self.text_features()
        feats = tokens @ self.proj
        return state_probability(feats, text, self.temperature).mean(dim=1)
