"""Scenes of the shapes world: sampling, geometry words and rendering.

A scene is a few saturated shapes on a plain background, one per cell of a coarse grid
(3x3 by default), so that every position word ("top left", "center") and relation
("to the left of", "above") is unambiguous and readable by a tiny vision tower at 32-64 px.
Colours within a scene are distinct, so "the red shape" always names one object; shapes may
repeat (at most twice), so counting questions have more than one answer.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Immutable vocabularies (tuples; the preset may restrict them).
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "white")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SIZES: tuple[str, ...] = ("small", "large")
RGB: dict[str, tuple[int, int, int]] = {
    "red": (235, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 90, 255),
    "yellow": (250, 225, 20),
    "purple": (170, 50, 230),
    "white": (245, 245, 245),
}
BACKGROUND = (0, 0, 0)
MAX_SAME_SHAPE = 2


@dataclass(frozen=True)
class Obj:
    """One shape: attributes plus its grid cell (row, col)."""

    shape: str
    color: str
    size: str
    row: int
    col: int


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    grid: int


def sample_scene(
    rng: random.Random, n_objects: int, grid: int, colors: tuple[str, ...] = COLORS, shapes: tuple[str, ...] = SHAPES
) -> Scene:
    """Uniform over cells, colours (distinct), shapes (<= MAX_SAME_SHAPE each) and sizes."""
    if not 1 <= n_objects <= min(grid * grid, len(colors)):
        raise ValueError(f"n_objects={n_objects} does not fit grid={grid} / {len(colors)} colours")
    cells = rng.sample([(r, c) for r in range(grid) for c in range(grid)], n_objects)
    cols = rng.sample(list(colors), n_objects)
    picked: list[str] = []
    for _ in range(n_objects):
        allowed = [s for s in shapes if picked.count(s) < MAX_SAME_SHAPE]
        picked.append(rng.choice(allowed))
    objs = [Obj(s, c, rng.choice(SIZES), r, cc) for s, c, (r, cc) in zip(picked, cols, cells)]
    objs.sort(key=lambda o: (o.row, o.col))  # reading order: lists are spatially ordered
    return Scene(tuple(objs), grid)


def sample_n_objects(rng: random.Random, max_objects: int, one_object_share: float) -> int:
    """Curriculum mix: `one_object_share` single-object scenes, the rest uniform in 2..max."""
    if max_objects == 1 or rng.random() < one_object_share:
        return 1
    return rng.randint(2, max_objects)


# ---------------------------------------------------------------- geometry words
def position(o: Obj, grid: int) -> str:
    """Absolute position answer: 'top left', 'top', 'left', 'center', ... (3x3 semantics)."""
    half = grid / 2 - 0.5  # centre index (x.5 on even grids: no middle row/column)
    vert = "top" if o.row < half else ("bottom" if o.row > half else "")
    horiz = "left" if o.col < half else ("right" if o.col > half else "")
    words = " ".join(w for w in (vert, horiz) if w)
    return words or "center"


def position_phrase(o: Obj, grid: int) -> str:
    """'on the left', 'at the top right', 'in the center'."""
    pos = position(o, grid)
    if pos == "center":
        return "in the center"
    if pos in ("left", "right"):
        return f"on the {pos}"
    return f"at the {pos}"


def holds(rel: str, a: Obj, b: Obj) -> bool:
    """Truth of `a rel b` for rel in left/right/above/below/next (cell-based, strict)."""
    if rel == "left":
        return a.col < b.col
    if rel == "right":
        return a.col > b.col
    if rel == "above":
        return a.row < b.row
    if rel == "below":
        return a.row > b.row
    if rel == "next":
        return max(abs(a.row - b.row), abs(a.col - b.col)) == 1
    raise ValueError(f"unknown relation {rel!r}")


REL_PHRASE: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
    "next": "next to",
}
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}


def true_relations(a: Obj, b: Obj) -> list[str]:
    """Directional relations (no 'next') that hold for a w.r.t. b."""
    return [r for r in ("left", "right", "above", "below") if holds(r, a, b)]


def ref(o: Obj, scene: Scene) -> str:
    """Shortest unique noun phrase without article: 'circle' or 'red circle'."""
    same = sum(1 for x in scene.objects if x.shape == o.shape)
    return o.shape if same == 1 else f"{o.color} {o.shape}"


def unique_shape_objects(scene: Scene) -> list[Obj]:
    return [o for o in scene.objects if sum(x.shape == o.shape for x in scene.objects) == 1]


# ---------------------------------------------------------------- rendering
def _draw_shape(d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, h: float, fill: tuple[int, int, int]) -> None:
    if shape == "circle":
        d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif shape == "square":
        s = h * 0.88  # equalize visual area with the circle
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - h), (cx - h, cy + h * 0.9), (cx + h, cy + h * 0.9)], fill=fill)
    elif shape == "cross":
        t = h * 0.36
        d.rectangle([cx - h, cy - t, cx + h, cy + t], fill=fill)
        d.rectangle([cx - t, cy - h, cx + t, cy + h], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, size: int, rng: random.Random, jitter: float = 0.06, supersample: int = 4) -> Image.Image:
    """Draw at `supersample`x then downsample (anti-aliased, crisp edges at small sizes).

    Large shapes fill ~85% of their cell, small ones ~50%; `jitter` (fraction of a cell)
    moves centres and sizes a little so the tower cannot memorise pixel templates.
    """
    big = size * supersample
    img = Image.new("RGB", (big, big), BACKGROUND)
    d = ImageDraw.Draw(img)
    cell = big / scene.grid
    for o in scene.objects:
        frac = 0.43 if o.size == "large" else 0.25
        h = cell * frac * (1 + rng.uniform(-jitter, jitter))
        slack = max(0.0, cell / 2 - h)
        dx = rng.uniform(-1, 1) * min(slack, cell * jitter)
        dy = rng.uniform(-1, 1) * min(slack, cell * jitter)
        cx, cy = (o.col + 0.5) * cell + dx, (o.row + 0.5) * cell + dy
        _draw_shape(d, o.shape, cx, cy, h, RGB[o.color])
    return img.resize((size, size), Image.Resampling.LANCZOS)


def jpeg_bytes(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()
