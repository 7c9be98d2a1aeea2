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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from data_prep.shapes_gqa import GQA_FAMILIES
from data_prep.shapes_questions import PRETRAIN_FAMILIES, QA, VQA_FAMILIES, sample_questions
from data_prep.shapes_scene import Scene, sample_n_objects, sample_scene
from data_prep.shapes_text import (
    AnswerNoise, CaptionStyle, downstream_caption, human_answers, pretrain_caption,
)

GENERATOR_VERSION = "shapes-world-1"
ID_STRIDE = 100_000  # image ids of a split are offset + index, index < ID_STRIDE


@dataclass(frozen=True)
class ShapesPreset:
    """All knobs of one build. Split sizes are numbers of images."""

    name: str = "default"
    image_size: int = 64
    grid: int = 3
    max_objects: int = 4
    pretrain_one_object_share: float = 0.25   # curriculum: single-object scenes in pretraining
    downstream_one_object_share: float = 0.1
    pretrain_train: int = 6000
    pretrain_val: int = 300
    train: int = 1500       # train2014: COCO Karpathy train, VQAv2 train, GQA train
    restval: int = 100      # val2014 images used for caption training only (Karpathy restval)
    val: int = 250          # val2014: Karpathy val, VQAv2 val, GQA val
    test: int = 250         # val2014: Karpathy test, VQAv2 val, GQA testdev
    testdev: int = 250      # test2015: VQAv2 test-dev (questions only)
    pretrain_captions: int = 2
    pretrain_questions: int = 4
    captions_per_image: int = 5
    vqa_questions: int = 5
    gqa_questions: int = 6
    jpeg_quality: int = 95
    caption_style: CaptionStyle = field(default_factory=CaptionStyle)
    noise: AnswerNoise = field(default_factory=AnswerNoise)

    def __post_init__(self) -> None:
        for name in ("pretrain_train", "pretrain_val", "train", "restval", "val", "test", "testdev"):
            n = getattr(self, name)
            if not 0 <= n < ID_STRIDE:
                raise ValueError(f"preset {self.name}: {name}={n} must be in [0, {ID_STRIDE})")
        if not 1 <= self.max_objects <= self.grid * self.grid:
            raise ValueError(f"preset {self.name}: max_objects={self.max_objects} does not fit grid {self.grid}")


PRESETS: dict[str, ShapesPreset] = {
    "default": ShapesPreset(),
    "smoke": ShapesPreset(name="smoke", pretrain_train=48, pretrain_val=16, train=48, restval=4,
                          val=16, test=16, testdev=16,
                          # more relation captions so 48 images still cover "above/below/next"
                          caption_style=CaptionStyle(p_relation=0.3)),
}


@dataclass(frozen=True)
class SplitSpec:
    """Where a plan split lives: COCO folder, id offset and which text it gets."""

    name: str
    folder: str            # train2014 | val2014 | test2015
    id_offset: int
    pretrain: bool


SPLITS: tuple[SplitSpec, ...] = (
    SplitSpec("pretrain_train", "train2014", 10 * ID_STRIDE, True),
    SplitSpec("pretrain_val", "val2014", 15 * ID_STRIDE, True),
    SplitSpec("train", "train2014", 1 * ID_STRIDE, False),
    SplitSpec("restval", "val2014", 3 * ID_STRIDE, False),
    SplitSpec("val", "val2014", 4 * ID_STRIDE, False),
    SplitSpec("test", "val2014", 5 * ID_STRIDE, False),
    SplitSpec("testdev", "test2015", 6 * ID_STRIDE, False),
)


@dataclass
class VQAItem:
    qa: QA
    answers: list[dict]
    mc_answer: str


@dataclass
class Item:
    """One image with all its text (captions, VQA and GQA questions)."""

    split: str
    folder: str
    image_id: int
    scene: Scene
    render_key: str
    captions: list[str] = field(default_factory=list)
    vqa: list[VQAItem] = field(default_factory=list)
    gqa: list[QA] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return f"COCO_{self.folder}_{self.image_id:012d}.jpg"


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
        item.captions = [pretrain_caption(rng, scene, preset.caption_style)
                         for _ in range(preset.pretrain_captions)]
        qas = sample_questions(rng, scene, PRETRAIN_FAMILIES, preset.pretrain_questions)
        item.vqa = _with_answers(rng, qas, preset.noise)
        return item
    if spec.name != "testdev":
        item.captions = [downstream_caption(rng, scene) for _ in range(preset.captions_per_image)]
    if spec.name != "restval":
        item.vqa = _with_answers(rng, sample_questions(rng, scene, VQA_FAMILIES, preset.vqa_questions),
                                 preset.noise)
    if spec.name in ("train", "val", "test"):
        item.gqa = sample_questions(rng, scene, GQA_FAMILIES, preset.gqa_questions)
    return item


def generate(preset: ShapesPreset, seed: int) -> dict[str, list[Item]]:
    """All items of all plan splits (text only; cheap)."""
    return {s.name: [make_item(preset, seed, s, i) for i in range(getattr(preset, s.name))]
            for s in SPLITS}


def resolve_preset(name: str, **overrides) -> ShapesPreset:
    if name not in PRESETS:
        raise SystemExit(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


def preset_fingerprint(preset: ShapesPreset, seed: int) -> dict:
    """What the cached build depends on (build_default hashes this)."""
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "preset": asdict(preset)}


def main(argv: list[str] | None = None) -> int:
    from data_prep.shapes_stats import format_stats, world_stats
    from data_prep.shapes_writer import write_world

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="DATA_ROOT; raw/ is (re)written atomically")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats", action="store_true",
                    help="print chance levels per question family and vocabulary coverage")
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
        print(f"[shapes_world] WARNING: downstream words never produced in pretraining: "
              f"{stats['uncovered_words']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
