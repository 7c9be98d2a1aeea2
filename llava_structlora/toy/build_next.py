"""Turn a LLaVA-1.5 base into a LLaVA-NeXT ("anyres") base, the way LLaVA-NeXT itself started.

    python -m llava_structlora.toy.build_next --from BASE_DIR --out NEXT_DIR

LLaVA-NeXT keeps LLaVA-1.5's vision tower, projector and LM and adds (a) anyres tiling: each image
is split into crops at the best of ``image_grid_pinpoints`` plus one resized base view, and (b)
a learned ``image_newline`` embedding after each row of crop features. This writes a stock
``LlavaNextForConditionalGeneration`` + ``LlavaNextProcessor`` with every 1.5 weight copied
exactly, ``image_newline`` freshly initialised, and the published v1.6 pinpoints scaled to the
base's image size (336 px -> ``image_size``). Used by ``ARCH=next`` in the finetune recipes to run
the whole NeXT path (encoding, training, merge, export, evaluation) on the shapes world.
Cached like build_base: an equal ``build_stamp.json`` key means nothing is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from llava_structlora.portable import base_tokenizer_class, make_portable
from llava_structlora.utils.io import atomic_directory, atomic_write_json, hash_jsonable, sha256_file
from llava_structlora.utils.strict_load import from_pretrained_strict

logger = logging.getLogger("llava_structlora.toy.build_next")
STAMP = "build_stamp.json"
BUILD_VERSION = 1  # bump when this converter changes what it produces
# llava-hf/llava-v1.6-* image_grid_pinpoints (height, width) at 336 px crops
V16_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


def scaled_pinpoints(image_size: int) -> list[list[int]]:
    """The v1.6 grid for crops of ``image_size`` px (1x2, 2x1, 2x2, 3x1, 1x3 crops)."""
    return [[h * image_size // 336, w * image_size // 336] for h, w in V16_PINPOINTS]


def next_processor(base_processor, pinpoints: list[list[int]]):
    """LlavaNextProcessor with the base's tokenizer, normalisation, patching and chat template."""
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    ip = base_processor.image_processor
    crop = getattr(ip, "crop_size", None) or {"height": ip.size["shortest_edge"], "width": ip.size["shortest_edge"]}
    nip = LlavaNextImageProcessor(
        size={"shortest_edge": crop["height"]},
        crop_size=dict(crop),
        image_grid_pinpoints=pinpoints,
        image_mean=list(ip.image_mean),
        image_std=list(ip.image_std),
        do_pad=True,
    )
    return LlavaNextProcessor(
        image_processor=nip,
        tokenizer=base_processor.tokenizer,
        patch_size=base_processor.patch_size,
        vision_feature_select_strategy=base_processor.vision_feature_select_strategy,
        num_additional_image_tokens=base_processor.num_additional_image_tokens,
        chat_template=getattr(base_processor, "chat_template", None),
    )


def max_image_tokens(processor, pinpoints: list[list[int]]) -> int:
    """Largest image-token count: an image exactly the size of a pinpoint (nothing unpadded)."""
    from llava_structlora.data import num_image_tokens

    return max(num_image_tokens(processor, (h, w)) for h, w in pinpoints)


def next_config(base_config, pinpoints: list[list[int]], max_positions: int):
    """LlavaNextConfig with the base's towers and projector settings."""
    from transformers import LlavaNextConfig

    text = base_config.text_config.to_dict()
    text["max_position_embeddings"] = max(int(text.get("max_position_embeddings") or 0), max_positions)
    return LlavaNextConfig(
        vision_config=base_config.vision_config.to_dict(),
        text_config=text,
        image_token_index=base_config.image_token_id,
        projector_hidden_act=base_config.projector_hidden_act,
        vision_feature_select_strategy=base_config.vision_feature_select_strategy,
        vision_feature_layer=base_config.vision_feature_layer,
        multimodal_projector_bias=getattr(base_config, "multimodal_projector_bias", True),
        image_grid_pinpoints=pinpoints,
        tie_word_embeddings=False,
        **{k: getattr(base_config, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id")},
    )


def convert(base_dir: Path, out_dir: Path, seed: int = 0) -> dict:
    """Write the NeXT model + processor into ``out_dir``; returns what the stamp records."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

    from llava_structlora.data import num_image_tokens

    base = from_pretrained_strict(LlavaForConditionalGeneration, base_dir, dtype=torch.float32)
    base_proc = AutoProcessor.from_pretrained(str(base_dir))
    pinpoints = scaled_pinpoints(base.config.vision_config.image_size)
    proc = next_processor(base_proc, pinpoints)
    n_max = max_image_tokens(proc, pinpoints)
    text_budget = base_proc.tokenizer.model_max_length - num_image_tokens(base_proc)
    proc.tokenizer.model_max_length = int(text_budget + n_max)  # the 1.5 base's text budget
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(next_config(base.config, pinpoints, proc.tokenizer.model_max_length))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if list(missing) != ["model.image_newline"] or unexpected:
        raise RuntimeError(
            f"{base_dir}: not a LLaVA-1.5 layout this converter knows "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.generation_config = base.generation_config
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    make_portable(out_dir, tokenizer_class=base_tokenizer_class(base_dir))  # transformers 4.57 reads it too
    return {
        "pinpoints": pinpoints,
        "max_image_tokens": n_max,
        "model_max_length": proc.tokenizer.model_max_length,
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def build_next(base_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Build NEXT_DIR from BASE_DIR unless its stamp matches the base's weights; returns the path."""
    base_dir, out = Path(base_dir), Path(out)
    weights = sorted(base_dir.glob("*.safetensors"))
    if not (base_dir / "config.json").is_file() or not weights:
        raise FileNotFoundError(f"{base_dir}: not a save_pretrained model dir (build the base first)")
    key = hash_jsonable({"v": BUILD_VERSION, "weights": {w.name: sha256_file(w) for w in weights}})
    stamp = out / STAMP
    if not force and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        logger.info("%s is up to date (key %s)", out, key)
        return out
    with atomic_directory(out) as tmp:
        info = convert(base_dir, tmp)
        atomic_write_json(tmp / STAMP, {"key": key, "from": str(base_dir.resolve()), **info})
    logger.info("built LLaVA-NeXT base %s from %s: %s", out, base_dir, info)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="base", required=True, help="LLaVA-1.5 base dir (save_pretrained layout)")
    ap.add_argument("--out", required=True, help="NEXT_DIR to write")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    build_next(args.base, args.out, args.force)


if __name__ == "__main__":
    main()
