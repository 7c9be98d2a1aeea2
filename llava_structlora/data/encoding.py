"""Images and token ids for LLaVA samples, consistent with the installed processor.

``<image>`` is expanded to exactly the number of placeholder tokens the processor would insert;
the model checks this count against its image features, so getting it wrong is a hard error at
forward time. Two families:

- LLaVA-1.5 (``LlavaProcessor``): one fixed count, patches + num_additional_image_tokens minus
  the CLS token under the "default" feature-select strategy; images are padded to a square
  first (expand2square), as LLaVA-1.5 trains.
- LLaVA-NeXT (``LlavaNextProcessor``, "anyres"): the image processor tiles each image at the
  best of ``image_grid_pinpoints`` plus one base view, so the count depends on the image's
  (height, width); ``pixel_values`` is ``(patches, 3, H, W)`` and the model needs ``image_sizes``.
  No expand2square: anyres keeps the aspect ratio itself (and unpads the features).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

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


def is_anyres(processor) -> bool:
    """True for a LLaVA-NeXT processor: images are tiled, the token count depends on the image size."""
    return getattr(processor.image_processor, "image_grid_pinpoints", None) is not None


def _crop_hw(processor) -> tuple[int, int]:
    ip = processor.image_processor
    size = getattr(ip, "crop_size", None) or ip.size
    if "height" not in size:  # e.g. {"shortest_edge": s} with no crop
        return size["shortest_edge"], size["shortest_edge"]
    return size["height"], size["width"]


def preprocess_images(images: Sequence[Image.Image], processor) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """RGB PIL images -> per-image pixel_values and the (height, width) each was seen at.

    One image-processor call for the whole list (per-image calls cost as much as a tiny model's
    forward). LLaVA-1.5: padded to a square with the processor mean colour, ``(3, H, W)`` each.
    LLaVA-NeXT: ``(patches, 3, H, W)`` each, cut to the image's own patch count (the processor pads
    every image to the batch's maximum; the collator pads again per training batch).
    """
    if not is_anyres(processor):
        background = mean_colour(processor)
        squares = [expand2square(img, background) for img in images]
        pixels = processor.image_processor(squares, return_tensors="pt")["pixel_values"]
        return list(pixels), [(sq.height, sq.width) for sq in squares]
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    out = processor.image_processor(list(images), return_tensors="pt")
    sizes = [tuple(int(v) for v in hw) for hw in out["image_sizes"]]
    grid, crop = processor.image_processor.image_grid_pinpoints, _crop_hw(processor)[0]
    pixels = [px[: image_size_to_num_patches(hw, grid, crop)] for px, hw in zip(out["pixel_values"], sizes)]
    return pixels, sizes


def open_rgb(path: str) -> Image.Image:
    """Decode fully and RGB-convert (PIL errors propagate: missing/corrupt file, decompression bomb).

    PIL's bomb *warning* (between 1x and 2x Image.MAX_IMAGE_PIXELS) is raised as an error too: such
    an image would take gigabytes to decode in a training worker.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")


def load_image_and_size(path: str, processor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``pixel_values`` of one image and the (height, width) that sets its image-token count."""
    pixels, sizes = preprocess_images([open_rgb(path)], processor)
    return pixels[0], sizes[0]


def load_image(path: str, processor) -> torch.Tensor:
    """Open, RGB-convert, preprocess (expand2square for LLaVA-1.5; tiles for NeXT).

    PIL errors (missing/corrupt file, decompression bomb) propagate; the dataset turns them into
    counted skips.
    """
    return load_image_and_size(path, processor)[0]


def image_size_of(path: str) -> tuple[int, int]:
    """(height, width) from the file header only: what a NeXT prompt's token count needs."""
    with Image.open(path) as im:
        return im.height, im.width


def num_image_tokens(processor, image_size: tuple[int, int] | None = None) -> int:
    """Placeholder count for one image, computed as the processor's ``replace_image_token`` does.

    ``image_size`` (height, width of the original image) is required for anyres (NeXT) processors.
    """
    if is_anyres(processor):
        if image_size is None:
            raise ValueError(
                f"{type(processor).__name__} tiles images (anyres): its image-token count depends "
                f"on the image; pass image_size=(height, width)"
            )
        h, w = _crop_hw(processor)
        n = processor._get_number_of_features(int(image_size[0]), int(image_size[1]), h, w)
    else:
        h, w = _crop_hw(processor)
        n = (h // processor.patch_size) * (w // processor.patch_size) + (processor.num_additional_image_tokens or 0)
    if processor.vision_feature_select_strategy == "default":
        n -= 1
    return n


def _encode_text(tokenizer, text: str, n_img: int) -> list[int]:
    return tokenizer(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * n_img), add_special_tokens=False)["input_ids"]


def _n_img(processor, image_size: tuple[int, int] | None, texts: Sequence[str]) -> int:
    """Token count for the sample's image (0 when no text holds ``<image>``: nothing to expand)."""
    if not any(IMAGE_TOKEN in t for t in texts):
        return 0
    return num_image_tokens(processor, image_size)


def encode_segments(
    segments: Sequence[Segment], processor, image_size: tuple[int, int] | None = None
) -> tuple[list[int], list[int]]:
    """Token ids and labels (IGNORE_INDEX except on target segments), BOS first.

    ``image_size``: (height, width) of the sample's image, needed by anyres (NeXT) processors.
    """
    tok = processor.tokenizer
    n_img = _n_img(processor, image_size, [seg.text for seg in segments])
    ids, labels = [tok.bos_token_id], [IGNORE_INDEX]
    for seg in segments:
        part = _encode_text(tok, seg.text, n_img)
        ids += part
        labels += part if seg.is_target else [IGNORE_INDEX] * len(part)
    return ids, labels


def encode_conversation(
    turns: Sequence[dict], processor, system: str = "", image_size: tuple[int, int] | None = None
) -> tuple[list[int], list[int]]:
    return encode_segments(conversation_segments(turns, system), processor, image_size)


def encode_prompt(
    question: str, processor, system: str = "", with_image: bool = True, image_size: tuple[int, int] | None = None
) -> list[int]:
    """Ids of a generation prompt (ends with 'ASSISTANT:'), identical to the training prefix."""
    tok = processor.tokenizer
    text = build_prompt(question, system, with_image)
    return [tok.bos_token_id] + _encode_text(tok, text, _n_img(processor, image_size, [text]))


def truncate(ids: list[int], labels: list[int], max_len: int, image_token_id: int) -> tuple[list[int], list[int], bool]:
    """Cut at ``max_len`` from the end; refuse to cut inside/before the image tokens."""
    if len(ids) <= max_len:
        return ids, labels, False
    img_pos = [i for i, t in enumerate(ids) if t == image_token_id]
    if img_pos and img_pos[-1] >= max_len:
        raise ValueError(f"model_max_length={max_len} would cut the image tokens (last at {img_pos[-1]}); raise it")
    return ids[:max_len], labels[:max_len], True
