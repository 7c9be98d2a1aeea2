"""PNG figures of the experiments (matplotlib, Agg): curves, geometry per method, gate maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import per_seed
from .stats import summarize
from .tables import Table


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve(table: Table, result: dict[str, Any], out: Path) -> Path:
    """Test score vs rank / data fraction, ours (mean ± std over seeds) beside the paper's numbers."""
    plt = _plt()
    task = result["tasks"][0]
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(9, 3.4))
    for fam, method, color in (("LoRA", "lora", "tab:blue"), ("StructLoRA", "structlora", "tab:red")):
        pts = sorted(
            (getattr(r["variant"], table.curve), summarize(list(per_seed(r, task, "score").values())))
            for r in result["rows"].values()
            if r["variant"].method == method and task in r["tasks"]
        )
        if pts:
            xs = [p[0] for p in pts]
            ax.errorbar(
                xs,
                [p[1].mean for p in pts],
                yerr=[p[1].std for p in pts],
                marker="o",
                capsize=3,
                label=fam,
                color=color,
            )
        paper = table.paper.get(fam, {})
        if paper:
            axp.plot(sorted(paper), [paper[k] for k in sorted(paper)], marker="s", ls="--", color=color, label=fam)
    for a, title in ((ax, "shapes world (this repo)"), (axp, "paper: LLaVA-1.5-7B COCO")):
        a.set_xlabel("rank r" if table.curve == "rank" else "training data fraction")
        if table.curve == "rank":
            a.set_xscale("log", base=2)
        a.set_title(title, fontsize=9)
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    ax.set_ylabel("CIDEr (x100), test")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def geometry(result: dict[str, Any], out: Path) -> Path:
    """Drift energy and CosAdj of the final updates per method (bars = mean, whiskers = std)."""
    plt = _plt()
    task = result["tasks"][0]
    labels = [lab for lab, r in result["rows"].items() if task in r["tasks"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in (
        (axes[0], "drift_energy", "drift energy Σ‖ΔW_l − ΔW_l+1‖² (↓)"),
        (axes[1], "cos_adj", "adjacent-layer cosine CosAdj (↑)"),
    ):
        stats = [summarize(list(per_seed(result["rows"][lab], task, key).values())) for lab in labels]
        ax.bar(range(len(labels)), [s.mean for s in stats], yerr=[s.std for s in stats], capsize=3, color="tab:gray")
        ax.set_xticks(range(len(labels)), [lab.replace(" (", "\n(") for lab in labels], fontsize=7, rotation=20)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def gate_maps(result: dict[str, Any], out: Path, seed: int = 0) -> Path | None:
    """Evaluation gate value per (layer, direction) of each StructLoRA variant's final step."""
    plt = _plt()
    task = result["tasks"][0]
    maps = []
    for lab, row in result["rows"].items():
        run = row["tasks"].get(task, {}).get("runs", {}).get(seed)
        diag = (run or {}).get("structlora_diagnostics") or {}
        gates = diag.get("gate_values")
        if gates:
            maps.append((lab, list(gates), [gates[k] for k in gates]))
    if not maps:
        return None
    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 0.18 * len(maps[0][1]) + 1.6), squeeze=False)
    for ax, (lab, names, values) in zip(axes[0], maps):
        im = ax.imshow(values, aspect="auto", vmin=0, vmax=1, cmap="viridis")
        ax.set_title(lab, fontsize=8)
        ax.set_xlabel("direction k")
        ax.set_yticks(
            range(len(names)),
            [n.replace("model.", "").replace(".self_attn", "") for n in names] if ax is axes[0][0] else [],
            fontsize=5,
        )
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.02)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def figures_for(table: Table, result: dict[str, Any], fig_dir: Path) -> list[Path]:
    fig_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path | None] = []
    if table.curve:
        made.append(curve(table, result, fig_dir / f"{table.name}_curve.png"))
    if table.name in ("regularizers", "main", "ablation"):
        made.append(geometry(result, fig_dir / f"{table.name}_geometry.png"))
    if table.name in ("main", "ablation", "filter", "gnn_depth", "graph"):
        made.append(gate_maps(result, fig_dir / f"{table.name}_gate_maps.png"))
    return [p for p in made if p is not None]
