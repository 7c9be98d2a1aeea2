"""The what-moved figure draws the coordinator's smoothing coefficients when there are any."""

from __future__ import annotations

import json

import torch

from llava_structlora.structlora import StructLoRAConfig, apply_structlora, structlora_moved
from llava_structlora.train.plots import plot_moved


def tiny_llava():
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from tests.tiny_configs import tiny_vision_text

    vc, tc = tiny_vision_text()
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(LlavaConfig(vision_config=vc, text_config=tc, image_token_index=99))


def test_moved_plot_with_and_without_smoothing(tmp_path):
    for coordinator in ("gnn", "none"):
        moved = json.loads(
            json.dumps(structlora_moved(apply_structlora(tiny_llava(), StructLoRAConfig(coordinator=coordinator))))
        )
        assert (moved["smoothing"] is None) == (coordinator == "none")
        png = plot_moved(moved, tmp_path / f"{coordinator}.png")
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def _figures(monkeypatch):
    """Capture the figures the plot functions save (instead of closing them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = []
    monkeypatch.setattr(plt, "close", lambda fig: saved.append(fig))
    return saved


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_no_empty_panels_no_legend_over_a_title_readable_labels(tmp_path, monkeypatch):
    """Issue 25's plot defects, checked on the drawn figures: smoothing panel only with edges, CosAdj axis only
    when defined, legends clear of every title, tick labels of the per-layer maps at >= 8 pt."""
    from llava_structlora.train.plots import plot_cosine, plot_drift, plot_gate_map

    saved = _figures(monkeypatch)
    moved = json.loads(json.dumps(structlora_moved(apply_structlora(tiny_llava(), StructLoRAConfig()))))
    no_edges = {**moved, "smoothing": {"coef_init": {}, "coef_final": {}, "median_abs_delta": None}}
    plot_moved(no_edges, tmp_path / "m.png")
    assert len(saved[-1].axes) == 3  # 2 panels + the twin axis of the per-layer panel, no empty third panel
    plot_drift([{"step": 10, "drift_energy": 0.0, "cos_adj": float("nan")}], tmp_path / "d1.png")
    assert len(saved[-1].axes) == 1 and "CosAdj undefined" in saved[-1].axes[0].get_title()
    recs = [{"step": s, "drift_energy": s / 10, "cos_adj": 0.5 - s / 100} for s in (20, 40, 60)]
    plot_drift(recs, tmp_path / "d2.png")
    names = [f"model.language_model.layers.{i}.self_attn.{p}_proj" for i in range(3) for p in "qv"]
    plot_gate_map({n: [1.0, 0.0, 1.0, 1.0] for n in names}, tmp_path / "g.png")
    plot_cosine([[1.0 if i == j else 0.3 for j in range(6)] for i in range(6)], names, tmp_path / "c.png")
    for fig in saved:
        renderer = fig.canvas.get_renderer()
        titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
        for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
            box = legend.get_window_extent(renderer)
            assert not any(_overlap(box, t) for t in titles), [t.get_text() for t in legend.get_texts()]
    for fig in saved[-2:]:  # gate map and cosine map
        labels = fig.axes[0].get_yticklabels() + fig.axes[0].get_xticklabels()
        assert labels and min(lab.get_fontsize() for lab in labels) >= 8
        assert {lab.get_text() for lab in fig.axes[0].get_yticklabels()} >= {"lm0.q", "lm2.v"}
