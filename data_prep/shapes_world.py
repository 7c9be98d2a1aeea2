"""The offline shapes world: a deterministic stand-in for COCO / VQAv2 / GQA.

    python -m data_prep.shapes_world --out DATA_ROOT [--preset default|smoke] [--seed 0] [--stats]

writes images plus exactly the official file formats under DATA_ROOT/raw/ (see
docs/ARCHITECTURE.md and docs/shapes_world.md), so that the default data goes through the
very same converters as the real files. Same (preset, seed, GENERATOR_VERSION) -> byte-identical
files. Every image draws from its own RNG keyed by (seed, split, index), so changing one
split's size never changes another split's content.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from data_prep.shapes_gqa import GQA_FAMILIES
from data_prep.shapes_preset import (  # noqa: F401 - PRESETS/ShapesPreset/preset_fingerprint re-exported
    GENERATOR_VERSION,
    PRESETS,
    SPLITS,
    Item,
    ShapesPreset,
    SplitSpec,
    VQAItem,
    preset_fingerprint,
    resolve_preset,
)
from data_prep.shapes_questions import PRETRAIN_FAMILIES, QA, VQA_FAMILIES, sample_questions
from data_prep.shapes_scene import sample_n_objects, sample_scene
from data_prep.shapes_stats import format_stats, world_stats
from data_prep.shapes_text import AnswerNoise, downstream_caption, human_answers, pretrain_caption
from data_prep.shapes_writer import write_world


def _with_answers(rng: random.Random, qas: list[QA], noise: AnswerNoise) -> list[VQAItem]:
    out = []
    for qa in qas:
        answers, mc = human_answers(rng, qa.answer, qa.answer_type, qa.space, noise)
        out.append(VQAItem(qa, answers, mc))
    return out


def make_item(preset: ShapesPreset, seed: int, spec: SplitSpec, index: int) -> Item:
    """Scene + text for one image; rendering is deferred (render_key seeds it)."""
    key = f"{GENERATOR_VERSION}:{seed}:{spec.name}:{index}"
    rng = random.Random(key)
    share = preset.pretrain_one_object_share if spec.pretrain else preset.downstream_one_object_share
    scene = sample_scene(rng, sample_n_objects(rng, preset.max_objects, share), preset.grid)
    item = Item(spec.name, spec.folder, spec.id_offset + index, scene, key + ":render")
    if spec.pretrain:
        item.captions = [pretrain_caption(rng, scene, preset.caption_style) for _ in range(preset.pretrain_captions)]
        qas = sample_questions(rng, scene, PRETRAIN_FAMILIES, preset.pretrain_questions)
        item.vqa = _with_answers(rng, qas, preset.noise)
        return item
    if spec.name != "testdev":
        item.captions = [downstream_caption(rng, scene) for _ in range(preset.captions_per_image)]
    if spec.name != "restval":
        item.vqa = _with_answers(rng, sample_questions(rng, scene, VQA_FAMILIES, preset.vqa_questions), preset.noise)
    if spec.name in ("train", "val", "test"):
        item.gqa = sample_questions(rng, scene, GQA_FAMILIES, preset.gqa_questions)
    return item


def generate(preset: ShapesPreset, seed: int) -> dict[str, list[Item]]:
    """All items of all plan splits (text only; cheap)."""
    return {s.name: [make_item(preset, seed, s, i) for i in range(getattr(preset, s.name))] for s in SPLITS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="DATA_ROOT; raw/ is (re)written atomically")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--stats", action="store_true", help="print chance levels per question family and vocabulary coverage"
    )
    args = ap.parse_args(argv)
    if args.out is None and not args.stats:
        ap.error("give --out DATA_ROOT and/or --stats")
    preset = resolve_preset(args.preset)
    items = generate(preset, args.seed)
    if args.out is not None:
        raw = write_world(items, preset, args.seed, args.out)
        print(f"[shapes_world] wrote {raw}", file=sys.stderr)
    stats = world_stats(items)
    if args.stats:
        print(format_stats(stats, preset))
    if stats["uncovered_words"]:
        print(
            f"[shapes_world] WARNING: downstream words never produced in pretraining: {stats['uncovered_words']}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
