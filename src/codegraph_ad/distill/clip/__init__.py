"""CLIP-based (text-prompted) per-image anomaly models trained on pseudo-masks: an APRIL-GAN-style
linear adapter and AnomalyCLIP-style learnable prompts, plus the per-image detector around
WinCLIP zero-shot scoring (the method itself is ``codegraph_ad.methods.winclip``; the CLIP is
loaded by ``codegraph_ad.backbones.clip``). open_clip is imported lazily
(``codegraph_ad.backbones._optional``)."""
