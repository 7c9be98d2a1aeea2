"""Which comparisons each table tests: the paper's claims (COMPARISONS, one Holm family per table) and the
matched-lr contrasts (MATCHED, a second family), by row label (experiments/tables.py)."""

from __future__ import annotations

# (a, b, quantity, expected sign of a - b in the paper). Labels missing from a (quick) run are skipped.
COMPARISONS: dict[str, list[tuple[str, str, str, int]]] = {
    "main": [
        ("StructLoRA", "LoRA", "score", 1),
        ("StructLoRA", "DoRA", "score", 1),
        ("StructLoRA", "AdaLoRA", "score", 1),
        ("StructLoRA", "LoRA-Dropout", "score", 1),
    ],
    "ablation": [
        ("StructLoRA", "w/o IB (filter=none)", "score", 1),
        ("StructLoRA", "w/o GNN (coordinator=none)", "score", 1),
        ("w/o GNN (coordinator=none)", "w/o IB (filter=none)", "score", 1),
        ("w/o both (filter=none, coordinator=none)", "LoRA", "score", 0),
        ("StructLoRA", "learned scale, no IB (lambda_ib=0)", "score", 1),
        ("w/o IB (filter=none)", "LoRA + learned layer scale (filter=layer_scale, coordinator=none)", "score", 1),
        ("StructLoRA", "fixed smoothing, no learned weights (coordinator=laplacian)", "score", 1),
        ("StructLoRA", "paper's learned GNN (coordinator=gnn)", "score", 0),
        (
            "paper's learned GNN (coordinator=gnn)",
            "fixed smoothing, no learned weights (coordinator=laplacian)",
            "score",
            1,
        ),
        # records written before coupling became the default ("StructLoRA" was the GNN there)
        ("measured coupling (coordinator=coupling)", "StructLoRA", "score", 0),
        (
            "measured coupling (coordinator=coupling)",
            "fixed smoothing, no learned weights (coordinator=laplacian)",
            "score",
            0,
        ),
    ],
    "coordinator": [
        ("StructLoRA", "LoRA", "score", 1),
        ("StructLoRA", "paper's learned GNN (coordinator=gnn)", "score", 0),
        ("paper's learned GNN (coordinator=gnn)", "LoRA", "score", 1),
    ],
    "lora_rank": [(f"LoRA rank={r}", "LoRA", "score", 0) for r in (1, 2, 4)],
    "gnn_depth": [("1-layer GNN", "2-layer GNN", "score", 1), ("1-layer GNN", "3-layer GNN", "score", 1)],
    "graph": [("graph=hybrid", "graph=adjacency", "score", 1), ("graph=hybrid", "graph=similarity", "score", 1)],
    "filter": [
        ("filter=ib", "filter=topk_norm", "score", 1),
        ("filter=topk_norm", "filter=random", "score", 1),
        ("filter=ib", "filter=random", "score", 1),
    ],
    "defaults": [
        (lab, "StructLoRA", "val", 0)
        for lab in (
            "learned scale, no IB (lambda_ib=0)",
            "lambda_ib=0.0001",
            "lambda_ib=0.01",
            "gate_lr_mult=10.0",
            "gate_lr_mult=1000.0",
            "modulation=normalized",
            "gate_noise=none",
            "smooth_edges=same_shape",
            "edge_weights=free",
            "coordinator_lr_mult=1.0",
        )
    ],
    "regularizers": [
        ("StructLoRA", "LoRA+Cos", "score", 1),
        ("StructLoRA", "LoRA+Lap", "score", 1),
        ("LoRA+GNN (filter=none)", "LoRA+Cos", "score", 1),
        ("LoRA+GNN (filter=none)", "LoRA+Lap", "score", 1),
        ("LoRA+Cos", "LoRA", "drift_energy", -1),
        ("LoRA+Lap", "LoRA", "drift_energy", -1),
        ("LoRA+GNN (filter=none)", "LoRA", "drift_energy", -1),
        ("LoRA+GNN (filter=none)", "LoRA+Lap", "drift_energy", -1),
        ("LoRA+GNN (filter=none)", "LoRA", "cos_adj", 1),
        ("LoRA+GNN (filter=none)", "LoRA+Lap", "cos_adj", 1),
    ],
}


# Matched-lr contrasts (a second Holm family, printed beside the tuned-lr claims): each pair at one shared lr.
MATCHED: dict[str, list[tuple[str, str, str, int]]] = {
    "coordinator": [
        ("StructLoRA", "LoRA at StructLoRA's lr", "score", 1),
        ("paper's learned GNN (coordinator=gnn)", "LoRA at StructLoRA's lr", "score", 1),
    ],
    "main": [
        ("StructLoRA", "LoRA at StructLoRA's lr", "score", 1),
        ("StructLoRA at LoRA's lr", "LoRA", "score", 1),
        ("StructLoRA", "DoRA at StructLoRA's lr", "score", 1),
        ("StructLoRA at DoRA's lr", "DoRA", "score", 1),
        ("StructLoRA", "AdaLoRA at StructLoRA's lr", "score", 1),
        ("StructLoRA", "LoRA-Dropout at StructLoRA's lr", "score", 1),
    ],
}
