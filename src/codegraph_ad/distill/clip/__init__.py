"""CLIP-based (text-prompted) per-image anomaly models: WinCLIP zero-shot scoring, an
APRIL-GAN-style linear adapter and AnomalyCLIP-style learnable prompts, the last two trainable
on pseudo-masks. open_clip is imported lazily (``codegraph_ad.backbones._optional``)."""
