"""Diagnostic PNGs of a StructLoRA run (matplotlib, headless): gate map per layer, cosine heatmap
across layers, drift energy (and CosAdj) over steps. Inputs are structlora_diagnostics records."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from .callbacks import read_diagnostics

logger = logging.getLogger(__name__)


def _short(name: str) -> str:
    """`model.language_model.layers.3.self_attn.q_proj` -> `lm3.q`."""
    tower = "vis" if "vision" in name else "lm"
    parts = name.split(".")
    idx = next((p for p in parts if p.isdigit()), "?")
    return f"{tower}{idx}.{parts[-1].split('_')[0]}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


LABEL_SIZE = 9  # tick labels of the per-layer maps: readable at the saved 120 dpi


def _finite(values: list[Any]) -> bool:
    return any(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def plot_gate_map(gates: dict[str, list[float]], path: Path) -> Path:
    plt = _plt()
    names = list(gates)
    width = max(len(v) for v in gates.values())
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * width + 3), max(2.2, 0.35 * len(names) + 1.2)))
    im = ax.imshow([gates[n] for n in names], aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=LABEL_SIZE)
    step = max(1, width // 16)
    ax.set_xticks(range(0, width, step), [str(k) for k in range(0, width, step)], fontsize=LABEL_SIZE)
    ax.set_xlabel("rank direction k")
    ax.set_ylabel("adapted layer")
    ax.set_title("evaluation gate g_l[k] (0 = closed)")
    fig.colorbar(im, ax=ax, label="gate")
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    """Lay out, write the PNG, and free the figure (matplotlib keeps every open figure alive)."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cosine(matrix: list[list[float]], names: list[str], path: Path) -> Path:
    plt = _plt()
    n = len(matrix)
    side = max(4.0, 0.4 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(matrix, cmap="coolwarm", vmin=-1.0, vmax=1.0)
    ticks = [_short(x) for x in names] if len(names) == n else [str(i) for i in range(n)]
    ax.set_xticks(range(n), ticks, rotation=45, ha="right", fontsize=LABEL_SIZE)
    ax.set_yticks(range(n), ticks, fontsize=LABEL_SIZE)
    if n <= 12:  # few cells: print the values (a colour alone does not tell 0.0 from "not comparable")
        for i in range(n):
            for j in range(n):
                v = matrix[i][j]
                text = f"{v:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"
                ax.text(j, i, text, ha="center", va="center", fontsize=LABEL_SIZE - 1)
    ax.set_title("cosine of layer updates\n(same-shape layers; others 0)")
    fig.colorbar(im, ax=ax, label="cosine")
    return _save(plt, fig, path)


def plot_drift(records: list[dict[str, Any]], path: Path) -> Path:
    """Drift energy (left axis) and CosAdj (right axis, only when it was defined) over the logged steps."""
    plt = _plt()
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    energy = [r.get("drift_energy", math.nan) for r in records]
    handles = ax.plot(steps, energy, "o-", label="drift energy E")
    ax.set_xlabel("step")
    ax.set_ylabel("E")
    cos = [r.get("cos_adj", math.nan) for r in records]
    if _finite(cos):  # undefined with one layer per shape: no empty second axis
        ax2 = ax.twinx()
        handles += ax2.plot(steps, cos, "s--", color="tab:orange", label="CosAdj")
        ax2.set_ylabel("CosAdj")
    # below the axes: over neither the title nor either curve
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    ax.xaxis.get_major_locator().set_params(integer=True)
    title = "drift energy and adjacent-layer cosine" if len(handles) > 1 else "drift energy (CosAdj undefined here)"
    ax.set_title(f"{title} over training", fontsize=10)
    return _save(plt, fig, path)


def plot_moved(moved: dict[str, Any], path: Path) -> Path:
    """Eval-gate histogram at init vs end, open directions + update norm per layer, and (with a smoothing
    coordinator that has edges) each edge's coefficient eta * a_lj at init vs end (structlora_moved)."""
    plt = _plt()
    smoothing = moved.get("smoothing") or {}
    edges = list(smoothing.get("coef_init") or {})  # none when no two layers share a shape (e.g. smoke base)
    fig, axes = plt.subplots(1, 3 if edges else 2, figsize=(15 if edges else 10.5, 4.2))
    ax1, ax2 = axes[0], axes[1]
    hist = moved["eval_gate_hist"]
    centers = [(a + b) / 2 for a, b in zip(hist["init"]["edges"], hist["init"]["edges"][1:])]
    for key, off in (("init", -0.02), ("final", 0.02)):
        ax1.bar([c + off for c in centers], hist[key]["counts"], width=0.04, label=key)
    ax1.set_xlabel("evaluation gate")
    ax1.set_ylabel("directions")
    ax1.legend(fontsize=8, loc="upper center")
    ax1.set_title("eval gates at init and at the end")
    names = list(moved["open_directions"]["final"])
    ax2.bar(range(len(names)), [moved["open_directions"]["final"][n] for n in names], label="open directions")
    ax2.set_xticks(range(len(names)), [_short(n) for n in names], rotation=45, ha="right", fontsize=LABEL_SIZE)
    ax2.set_ylabel("open directions (bars)")
    ax3 = ax2.twinx()
    ax3.plot(range(len(names)), [moved["update_norms"]["final"][n] for n in names], "o-", color="tab:red")
    ax3.set_ylabel("||dW|| of the final update (red)")
    ax2.set_title("per layer at the end")
    if edges:
        for key, off in (("coef_init", -0.2), ("coef_final", 0.2)):
            vals = [smoothing[key][e] for e in edges]
            axes[2].bar([i + off for i in range(len(edges))], vals, width=0.4, label=key.removeprefix("coef_"))
        labels = [" / ".join(_short(n) for n in e.split(" <-> ")) for e in edges]
        axes[2].set_xticks(range(len(edges)), labels, rotation=45, ha="right", fontsize=LABEL_SIZE)
        axes[2].set_ylabel("eta * a_lj")
        axes[2].legend(fontsize=8, loc="best")
        axes[2].set_title("coordinator: smoothing per edge")
    return _save(plt, fig, path)


def write_plots(
    diag_path: Path, final: dict[str, Any], out_dir: Path, moved: dict[str, Any] | None = None
) -> list[Path]:
    """All PNGs (a plot whose inputs are missing is skipped with a log line)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    records = read_diagnostics(diag_path)
    if records:
        written.append(plot_drift(records, out_dir / "drift_energy.png"))
    else:
        logger.warning("no diagnostics records in %s: drift plot skipped", diag_path)
    if final.get("gate_values"):
        written.append(plot_gate_map(final["gate_values"], out_dir / "gate_map.png"))
    if final.get("cosine_matrix"):
        written.append(
            plot_cosine(final["cosine_matrix"], list(final.get("update_norms", {})), out_dir / "cosine_heatmap.png")
        )
    if moved and moved.get("eval_gate_hist"):
        written.append(plot_moved(moved, out_dir / "gates_moved.png"))
    return written
