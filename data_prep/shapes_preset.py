"""The shapes world's data model: presets (all knobs of one build), plan splits, items.

Shared by the generator (shapes_world.py) and the writer (shapes_writer.py), which therefore do
not import each other. GENERATOR_VERSION is part of every RNG key and of the build fingerprint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from data_prep.shapes_questions import QA
from data_prep.shapes_scene import Scene
from data_prep.shapes_text import AnswerNoise, CaptionStyle

GENERATOR_VERSION = "shapes-world-1"
ID_STRIDE = 100_000  # image ids of a split are offset + index, index < ID_STRIDE


@dataclass(frozen=True)
class ShapesPreset:
    """All knobs of one build. Split sizes are numbers of images."""

    name: str = "default"
    image_size: int = 64
    grid: int = 3
    max_objects: int = 4
    pretrain_one_object_share: float = 0.25  # curriculum: single-object scenes in pretraining
    downstream_one_object_share: float = 0.1
    pretrain_train: int = 6000
    pretrain_val: int = 300
    train: int = 1500  # train2014: COCO Karpathy train, VQAv2 train, GQA train
    restval: int = 100  # val2014 images used for caption training only (Karpathy restval)
    val: int = 250  # val2014: Karpathy val, VQAv2 val, GQA val
    test: int = 250  # val2014: Karpathy test, VQAv2 val, GQA testdev
    testdev: int = 250  # test2015: VQAv2 test-dev (questions only)
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
    "smoke": ShapesPreset(
        name="smoke",
        pretrain_train=48,
        pretrain_val=16,
        train=48,
        restval=4,
        val=16,
        test=16,
        testdev=16,
        # more relation captions so 48 images still cover "above/below/next"
        caption_style=CaptionStyle(p_relation=0.3),
    ),
    # The study's deeper testbed (issue #20; docs/experiments.md, "Deeper testbed"): the default world with a test
    # split twice as large (500 images: 2,500 VQAv2 / 3,000 GQA questions), so that a seed's score is measured
    # with half the per-question noise; paired with the `deep` tiny base (4 + 4 layers).
    "deep": ShapesPreset(name="deep", test=500),
}


@dataclass(frozen=True)
class SplitSpec:
    """Where a plan split lives: COCO folder, id offset and which text it gets."""

    name: str
    folder: str  # train2014 | val2014 | test2015
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


def resolve_preset(name: str, **overrides) -> ShapesPreset:
    if name not in PRESETS:
        raise SystemExit(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


def preset_fingerprint(preset: ShapesPreset, seed: int) -> dict:
    """What the cached build depends on (build_default hashes this)."""
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "preset": asdict(preset)}
