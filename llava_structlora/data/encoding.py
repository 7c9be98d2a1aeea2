"""Images and token ids for LLaVA samples, consistent with the installed LlavaProcessor.

``<image>`` is expanded to exactly the number of placeholder tokens the processor would insert
(``LlavaProcessor.replace_image_token``: patches + num_additional_image_tokens, minus the CLS
token under the "default" feature-select strategy); the model checks this count against its
image features, so getting it wrong is a hard error at forward time.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from PIL import Image

from .conversation import IGNORE_INDEX, IMAGE_TOKEN, Segment, build_prompt, conversation_segments


def expand2square(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Pad to a square with ``background`` (LLaVA-1.5 'pad' aspect mode) so nothing is cropped."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), background)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def mean_colour(processor) -> tuple[int, int, int]:
    return tuple(int(x * 255) for x in processor.image_processor.image_mean)


def load_image(path: str, processor) -> torch.Tensor:
    """Open, RGB-convert, pad to square with the processor mean colour, preprocess -> (3, H, W).

    PIL errors (missing/corrupt file, DecompressionBombError) propagate; the dataset turns them into
    counted skips. PIL's bomb *warning* (between 1x and 2x Image.MAX_IMAGE_PIXELS) is raised as an
    error too: such an image would take gigabytes to decode in a training worker.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGB")
    img = expand2square(img, mean_colour(processor))
    return processor.image_processor(img, return_tensors="pt")["pixel_values"][0]


def num_image_tokens(processor) -> int:
    """Placeholder count for one image, computed as LlavaProcessor.replace_image_token does."""
    ip = processor.image_processor
    size = getattr(ip, "crop_size", None) or ip.size
    h, w = size["height"], size["width"]
    n = (h // processor.patch_size) * (w // processor.patch_size) + (processor.num_additional_image_tokens or 0)
    if processor.vision_feature_select_strategy == "default":
        n -= 1
    return n


def _encode_text(tokenizer, text: str, n_img: int) -> list[int]:
    return tokenizer(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * n_img), add_special_tokens=False)["input_ids"]


def encode_segments(segments: Sequence[Segment], processor) -> tuple[list[int], list[int]]:
    """Token ids and labels (IGNORE_INDEX except on target segments), BOS first."""
    tok = processor.tokenizer
    n_img = num_image_tokens(processor)
    ids, labels = [tok.bos_token_id], [IGNORE_INDEX]
    for seg in segments:
        part = _encode_text(tok, seg.text, n_img)
        ids += part
        labels += part if seg.is_target else [IGNORE_INDEX] * len(part)
    return ids, labels


def encode_conversation(turns: Sequence[dict], processor, system: str = "") -> tuple[list[int], list[int]]:
    return encode_segments(conversation_segments(turns, system), processor)


def encode_prompt(question: str, processor, system: str = "", with_image: bool = True) -> list[int]:
    """Ids of a generation prompt (ends with 'ASSISTANT:'), identical to the training prefix."""
    tok = processor.tokenizer
    return [tok.bos_token_id] + _encode_text(tok, build_prompt(question, system, with_image), num_image_tokens(processor))


def truncate(ids: list[int], labels: list[int], max_len: int, image_token_id: int) -> tuple[list[int], list[int], bool]:
    """Cut at ``max_len`` from the end; refuse to cut inside/before the image tokens."""
    if len(ids) <= max_len:
        return ids, labels, False
    img_pos = [i for i, t in enumerate(ids) if t == image_token_id]
    if img_pos and img_pos[-1] >= max_len:
        raise ValueError(f"model_max_length={max_len} would cut the image tokens (last at {img_pos[-1]}); raise it")
    return ids[:max_len], labels[:max_len], True
