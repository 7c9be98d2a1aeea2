"""CLIPScore (Hessel et al., 2021) with open_clip and LOCAL weights (nothing is downloaded).

CLIP-S(c, v) = 2.5 * max(cos(E_text("A photo depicts " + c), E_image(v)), 0), averaged over
images (the reference implementation's prompt prefix and weight w = 2.5). Reported on that scale
(a typical value for good COCO captions with ViT-B/32 is about 0.76).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

PROMPT = "A photo depicts "
WEIGHT = 2.5


@torch.inference_mode()
def clip_score(
    image_paths: Sequence[str | Path],
    captions: Sequence[str],
    weights: str | Path,
    model_name: str = "ViT-B-32",
    device: str = "cpu",
    batch_size: int = 64,
) -> float:
    """Mean CLIP-S of (image, caption) pairs with an open_clip model loaded from `weights`."""
    import open_clip
    import torch.nn.functional as F
    from PIL import Image

    if len(image_paths) != len(captions) or not captions:
        raise ValueError(f"clip_score: {len(image_paths)} images vs {len(captions)} captions")
    if not Path(weights).is_file():
        raise FileNotFoundError(f"CLIP weights not found: {weights} (an open_clip checkpoint for {model_name})")
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(weights), device=device)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    total = 0.0
    for i in range(0, len(captions), batch_size):
        paths, caps = image_paths[i : i + batch_size], captions[i : i + batch_size]
        imgs = []
        for p in paths:
            with Image.open(p) as im:
                imgs.append(preprocess(im.convert("RGB")))
        img = F.normalize(model.encode_image(torch.stack(imgs).to(device)).float(), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer([PROMPT + c for c in caps]).to(device)).float(), dim=-1)
        total += float((WEIGHT * (img * txt).sum(-1).clamp(min=0)).sum())
    return total / len(captions)
