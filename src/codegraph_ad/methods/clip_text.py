"""CLIP's text side: fixed prompt ensembles (WinCLIP / APRIL-GAN) and prompts with learned context.

Both end in the same pair of unit vectors ``(2, D)``: row 0 the normal state, row 1 the
abnormal state, which the image side compares patch by patch. WinCLIP (``methods.winclip``)
uses the fixed ensemble; the trainable text models of ``distill.clip`` use both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# WinCLIP's compositional prompt ensemble: state words x templates.
NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ABNORMAL_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = (
    "a cropped photo of the {}.", "a cropped photo of a {}.", "a close-up photo of a {}.",
    "a close-up photo of the {}.", "a bright photo of a {}.", "a bright photo of the {}.",
    "a dark photo of the {}.", "a dark photo of a {}.", "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.", "a blurry photo of the {}.", "a blurry photo of a {}.",
    "a photo of a {}.", "a photo of the {}.", "a photo of a small {}.", "a photo of the small {}.",
    "a photo of a large {}.", "a photo of the large {}.", "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.", "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)


def ensemble_prompts(object_name: str, states: tuple[str, ...]) -> list[str]:
    return [t.format(s.format(object_name)) for s in states for t in TEMPLATES]


def encode_tokens(model: torch.nn.Module, ids: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's ``encode_text`` on token ids ``(P, T)``, optionally replacing the token embeddings at
    positions ``1..n`` (right after the start token) by ``ctx: (P, n, width)``; returns ``(P, D)``.
    """
    from open_clip.transformer import text_global_pool

    x = model.token_embedding(ids)
    if ctx is not None:
        n = ctx.shape[1]
        x = torch.cat([x[:, :1], ctx.to(x.dtype), x[:, 1 + n:]], dim=1)
    x = x + model.positional_embedding.to(x.dtype)
    x = model.transformer(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    x = text_global_pool(x, ids, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x


def state_embeddings(model: torch.nn.Module, tokenizer, object_name: str = "object") -> torch.Tensor:
    """``(2, D)`` unit vectors: mean of the normalised prompt embeddings of each state, renormalised."""
    out = []
    with torch.no_grad():
        for states in (NORMAL_STATES, ABNORMAL_STATES):
            emb = F.normalize(encode_tokens(model, tokenizer(ensemble_prompts(object_name, states))), dim=-1)
            out.append(F.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(out)


def state_probability(features: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """Abnormal-state probability: softmax over ``temperature * cos(feature, text_k)``; ``(..., D) -> (...)``."""
    logits = temperature * F.normalize(features, dim=-1) @ text.t()
    return logits.softmax(dim=-1)[..., 1]
