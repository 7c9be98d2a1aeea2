"""CLIPScore with local open_clip weights: equals 2.5 * max(cos, 0) computed by hand with open_clip."""

import json

import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip")

from llava_structlora.metrics.clipscore import clip_score  # noqa: E402

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}


def test_clip_score_matches_manual(tmp_path):
    (tmp_path / "TinyCLIP-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "TinyCLIP-test.json")
    torch.manual_seed(0)
    model = open_clip.create_model("TinyCLIP-test")
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255), (0, 200, 0)]):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    caps = ["a red square", "a blue square", "a green square"]
    got = clip_score(paths, caps, tmp_path / "tiny.pt", "TinyCLIP-test", batch_size=2)

    m, _, pre = open_clip.create_model_and_transforms("TinyCLIP-test", pretrained=str(tmp_path / "tiny.pt"))
    tok = open_clip.get_tokenizer("TinyCLIP-test")
    with torch.no_grad():
        fi = m.encode_image(torch.stack([pre(Image.open(p).convert("RGB")) for p in paths]))
        ft = m.encode_text(tok(["A photo depicts " + c for c in caps]))
    cos = torch.nn.functional.cosine_similarity(fi, ft, dim=-1)
    assert (cos > 0).any() and (cos < 1).all(), "a case where the clamp and the mean matter"
    assert got == pytest.approx(float((2.5 * cos.clamp(min=0)).mean()), abs=1e-6)
    with pytest.raises(FileNotFoundError, match="CLIP weights not found"):
        clip_score(paths, caps, tmp_path / "missing.pt", "TinyCLIP-test")
