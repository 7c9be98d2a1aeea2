"""Build (or reuse) the toy LLaVA base.

    python -m llava_structlora.toy.build_base --data DATA_ROOT --out BASE_DIR [--preset default|smoke]

Trains the sentencepiece tokenizer, builds a stock ``LlavaProcessor`` (with the chat templates of
``llava_structlora.data.chat_template``, default ``vicuna_v1_nosys``: the format it is trained with) +
``LlavaForConditionalGeneration``, pretrains it (stage 0 contrastive vision tower, stage 2 full instruction
training; see pretrain.py)
and ``save_pretrained``s both into BASE_DIR atomically. Cached: ``build_stamp.json`` holds the hash
of the preset and of every input JSON; an equal hash means nothing is rebuilt. When the repository ships a
build of the same key (``prebuilt.py``: the default and smoke presets on the default data) it is copied
instead of pretrained; ``--force`` pretrains anyway.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

from llava_structlora.data.chat_template import attach_chat_templates
from llava_structlora.data.conversation import DEFAULT_CONV_TEMPLATE
from llava_structlora.portable import make_portable
from llava_structlora.utils.errors import run_main
from llava_structlora.utils.io import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    check_rebuildable,
    hash_jsonable,
    sha256_file,
)

from . import prebuilt
from .model_config import BasePreset, get_preset, llava_config

logger = logging.getLogger("llava_structlora.toy.build_base")
STAMP = "build_stamp.json"
BUILD_VERSION = 4  # bump when the build code changes what it produces
TASKS = ("pretrain", "coco", "vqav2", "gqa")
TOKENIZER_CLASS = "LlamaTokenizer"  # what toy/tokenizer.py builds; v4 reads it as LlamaTokenizerFast


def input_files(data_root: Path) -> list[Path]:
    """pretrain JSON (required) + downstream training JSONs (tokenizer vocabulary only)."""
    pre = data_root / "pretrain" / "llava_train.json"
    if not pre.exists():
        raise FileNotFoundError(f"{pre} not found: build the data first (python -m data_prep.build_default)")
    return [p for p in (data_root / t / "llava_train.json" for t in TASKS) if p.exists()]


def build_key(preset: BasePreset, files: list[Path]) -> str:
    return hash_jsonable(
        {"v": BUILD_VERSION, "preset": preset.to_dict(), "files": {p.parent.name: sha256_file(p) for p in files}}
    )


def is_current(out: Path, key: str) -> bool:
    stamp = out / STAMP
    return stamp.exists() and json.loads(stamp.read_text()).get("key") == key


def build_processor(tokenizer, preset: BasePreset):
    """CLIPImageProcessor at the base's size; CLS dropped ("default") like LLaVA-1.5."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    s = preset.model.image_size
    ip = CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s})
    return LlavaProcessor(
        image_processor=ip,
        tokenizer=tokenizer,
        patch_size=preset.model.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def encode_samples(json_path: Path, processor, preset: BasePreset) -> list[dict]:
    """Pre-encode the training records once (each image decoded once, not once per epoch)."""
    from llava_structlora.data import LazySupervisedDataset, load_image

    ds = LazySupervisedDataset(json_path, processor, model_max_length=preset.model.model_max_length)
    if len(ds) < preset.pretrain.batch_size:
        raise ValueError(f"{json_path}: {len(ds)} records, fewer than one batch ({preset.pretrain.batch_size})")
    cache: dict[str, torch.Tensor] = {}  # ~6 records share each image: decode it once
    samples = []
    for rec in ds.records[: (preset.pretrain.caption_steps + preset.pretrain.steps) * preset.pretrain.batch_size]:
        path = str(ds.image_folder / rec["image"])
        if path not in cache:
            cache[path] = load_image(path, processor)
        ids, labels = ds.encode(rec)
        samples.append(
            {
                "input_ids": torch.tensor(ids),
                "labels": torch.tensor(labels),
                "pixel_values": cache[path],
                "id": rec["id"],
            }
        )
    logger.info("encoded %d training samples (skipped %s, truncated %d)", len(samples), dict(ds.skipped), ds.truncated)
    return samples


def train_base(data_root: Path, preset: BasePreset, out_dir: Path, files: list[Path]) -> dict:
    """Everything that writes into ``out_dir`` (a temp dir): tokenizer, processor, model, log."""
    from transformers import LlavaForConditionalGeneration

    from .pretrain import contrastive_stage, instruction_stage, standardize_projector_input
    from .tokenizer import build_tokenizer

    times, t0 = {}, time.time()
    tok = build_tokenizer(files, preset.model.vocab_size, preset.model.model_max_length)
    processor = build_processor(tok, preset)
    samples = encode_samples(files[0], processor, preset)
    times["tokenizer+encode_s"] = round(time.time() - t0, 1)
    cfg = llava_config(
        preset.model,
        len(tok),
        tok.convert_tokens_to_ids(processor.image_token),
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
    )
    torch.manual_seed(preset.seed)
    model = LlavaForConditionalGeneration(cfg)
    t1 = time.time()
    vision_sd, closs = contrastive_stage(samples, cfg.vision_config, tok, preset.contrastive, preset.seed)
    model.model.vision_tower.load_state_dict(vision_sd, strict=True)
    scale = standardize_projector_input(model, torch.stack([s["pixel_values"] for s in samples[:256]]))
    times["stage0_s"] = round(time.time() - t1, 1)
    t2 = time.time()
    losses = instruction_stage(model, samples, tok.pad_token_id, preset.pretrain, preset.seed)
    times["stage2_s"] = round(time.time() - t2, 1)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out_dir)
    attach_chat_templates(processor, DEFAULT_CONV_TEMPLATE).save_pretrained(out_dir)
    times["total_s"] = round(time.time() - t0, 1)
    return {
        "times": times,
        "n_params": sum(p.numel() for p in model.parameters()),
        "contrastive_loss": [closs[0], closs[-1]],
        "pretrain_loss": [losses[0], sum(losses[-20:]) / len(losses[-20:])],
        "n_train_samples": len(samples),
        "projector_input": scale,
    }


def add_missing_chat_templates(base_dir: Path) -> None:
    """A base built before the processors carried chat templates gets them, without retraining.

    The template files are written by the processor's own ``save_pretrained`` (into a temp dir) and
    copied in atomically; weights, tokenizer and stamp stay untouched.
    """
    import tempfile

    from transformers import AutoProcessor

    if (base_dir / "chat_template.jinja").is_file():
        return
    processor = attach_chat_templates(AutoProcessor.from_pretrained(base_dir), DEFAULT_CONV_TEMPLATE)
    with tempfile.TemporaryDirectory() as tmp:
        processor.save_pretrained(tmp)
        files = sorted(Path(tmp).glob("*chat_template*/*.jinja")) + [Path(tmp) / "chat_template.jinja"]
        for f in files:  # the default (chat_template.jinja) last: its presence marks the upgrade done
            (base_dir / f.relative_to(tmp)).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(base_dir / f.relative_to(tmp), f.read_bytes())
    logger.info("%s: added the chat templates (%d files)", base_dir, len(files))


def build_base(data_root: str | Path, out: str | Path, preset: str = "default", force: bool = False) -> Path:
    """Build BASE_DIR unless its stamp matches; returns the path."""
    data_root, out, p = Path(data_root), Path(out), get_preset(preset)
    check_rebuildable(out, STAMP, "base", {"data root": data_root})  # never wipe a folder that is not ours
    files = input_files(data_root)
    key = build_key(p, files)
    if not force and is_current(out, key):
        make_portable(out, tokenizer_class=TOKENIZER_CLASS)  # idempotent; bases built before portable.py
        logger.info("%s is up to date (key %s)", out, key)
        add_missing_chat_templates(out)
        return out
    machine = {"data_root": str(data_root.resolve()), "inputs": [str(f) for f in files]}
    if not force and prebuilt.install(out, p.name, key, machine):  # the shipped build of these very inputs
        make_portable(out, tokenizer_class=TOKENIZER_CLASS)  # idempotent: a copy shipped before a portable.py fix
        return out
    torch.set_num_threads(p.threads)
    with atomic_directory(out) as tmp:
        info = train_base(data_root, p, tmp, files)
        make_portable(tmp, tokenizer_class=TOKENIZER_CLASS)  # loads under transformers 4.57 and 5.x
        atomic_write_json(
            tmp / STAMP,
            {
                "key": key,
                "preset": p.to_dict(),
                **machine,
                **info,
            },
        )
    logger.info("built %s in %.1f s: %s", out, info["times"]["total_s"], info)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="DATA_ROOT (needs pretrain/llava_train.json)")
    ap.add_argument("--out", required=True, help="BASE_DIR to write")
    ap.add_argument("--preset", default="default", choices=["default", "smoke"])
    ap.add_argument("--force", action="store_true", help="pretrain even if the stamp or the shipped base matches")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    build_base(args.data, args.out, args.preset, args.force)


if __name__ == "__main__":
    sys.exit(run_main(main, None, "build_base"))
