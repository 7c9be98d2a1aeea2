"""Public StructLoRA API: apply, regularizer, per-step schedule, merge, save/load, state dict.

Typical training loop (HF Trainer / DeepSpeed ZeRO-2)::

    model = apply_structlora(llava, StructLoRAConfig(r=8, alpha=16))
    for step, batch in enumerate(loader):
        structlora_on_step(model, step, max_steps)
        loss = model(**batch).loss + structlora_regularizer(model)
        loss.backward(); opt.step(); opt.zero_grad()
    export_peft_adapter(model, "out/adapter"); save_structlora(model, "out/structlora")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..utils.io import atomic_save_safetensors, atomic_write_json, sha256_file
from .config import StructLoRAConfig
from .controller import StructLoRAController
from .diagnostics import cosine_matrix, diagnostics_from_state, filtered_gram, moved_from_state, penalty
from .gates import build_gate
from .graph import StructLoRAGraph, describe_nodes, vision_top_layer
from .layer import StructLoRALinear, name_seed
from .targets import resolve_target_modules

CONTROLLER_NAME = "structlora"
CONFIG_FILE = "structlora_config.json"
WEIGHTS_FILE = "structlora_model.safetensors"
FORMAT = "structlora-v1"


def get_controller(model: nn.Module) -> StructLoRAController:
    """The controller of an adapted model (also through DeepSpeed/DDP ``.module`` wrappers)."""
    while not isinstance(getattr(model, CONTROLLER_NAME, None), StructLoRAController) and hasattr(model, "module"):
        model = model.module
    ctrl = getattr(model, CONTROLLER_NAME, None)
    if not isinstance(ctrl, StructLoRAController):
        raise ValueError("model has no StructLoRA adapter: call apply_structlora(model, config) first")
    return ctrl


def _tower_layers(model: nn.Module) -> dict[str, int]:
    conf = getattr(model, "config", None)
    out = {}
    for tower, sub in (("vision", "vision_config"), ("language", "text_config")):
        n = getattr(getattr(conf, sub, None), "num_hidden_layers", None)
        if n:
            out[tower] = int(n)
    return out


def apply_structlora(model: nn.Module, config: Optional[StructLoRAConfig] = None) -> nn.Module:
    """Wrap the target linears in place, build the joint graph, freeze everything else.

    Only adapter factors, gate parameters and coordinator parameters stay trainable (the
    projector is left frozen: whether to train it is the recipe's decision). Works on the meta
    device. Returns ``model``.
    """
    cfg = config or StructLoRAConfig()
    if not isinstance(cfg, StructLoRAConfig):
        raise TypeError(f"config must be a StructLoRAConfig, got {type(cfg).__name__}")
    if isinstance(getattr(model, CONTROLLER_NAME, None), StructLoRAController):
        raise ValueError("model already has a StructLoRA adapter")
    names = resolve_target_modules(model, cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    # (out, in) from the module: a ZeRO-3-partitioned or 4-bit-packed weight's .shape is not the layer's shape
    shapes = [(model.get_submodule(n).out_features, model.get_submodule(n).in_features) for n in names]
    towers = _tower_layers(model)
    nodes = describe_nodes(names, shapes, towers)
    layers = []
    for node in nodes:
        parent_name, _, child = node.name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = StructLoRALinear(getattr(parent, child), cfg, node.name)
        setattr(parent, child, layer)
        layers.append(layer)
    vfl = getattr(getattr(model, "config", None), "vision_feature_layer", None)
    n_vis = towers.get("vision", 1 + max((n.layer for n in nodes if n.tower == "vision"), default=0))
    ctrl = StructLoRAController(cfg, layers, nodes, vision_top_layer(vfl, n_vis))
    model.add_module(CONTROLLER_NAME, ctrl)
    ctrl.attach(model)
    return model


def structlora_regularizer(model: nn.Module, config: Optional[StructLoRAConfig] = None) -> Tensor:
    """``lambda_ib * sum over all gates of their KL`` (+ ``lambda_penalty * penalty`` for *_penalty).

    Summed, not averaged: each gate feels the same IB pressure whether the model has 8 or 112 adapted
    layers and whatever r is (lambda_ib is warmed up linearly over ``ib_warmup_steps``).

    Args:
        config: the run's config (the training loop hands down the one it built the model with); None: the
            config ``apply_structlora`` was given.
    """
    ctrl = get_controller(model)
    cfg, layers = (config if config is not None else ctrl.cfg), ctrl.layers
    reg = layers[0].lora_A.new_zeros(())
    gate = layers[0].gate
    weight = ctrl.ib_weight(cfg)
    if cfg.filter == "ib" and weight > 0 and gate is not None:
        reg = reg + weight * type(gate).kl(type(gate).stack([l.gate for l in layers]), cfg).sum()
    if cfg.coordinator in ("cosine_penalty", "laplacian_penalty") and cfg.lambda_penalty > 0:
        m = ctrl.gates(False) * cfg.scale
        reg = reg + cfg.lambda_penalty * penalty(cfg.coordinator, filtered_gram(layers, ctrl.nodes, m), ctrl.smooth)
    return reg


def structlora_on_step(model: nn.Module, step: int, max_steps: int) -> None:
    """Call before each optimizer step's forward: annealing, graph refresh, top-k recomputation."""
    get_controller(model).on_step(step, max_steps)


@torch.no_grad()
def eval_plans(model: nn.Module):
    """Deterministic (eval-gate) coordinator state and plans, independent of ``model.training``.

    Recomputed from the current parameters (descriptor cache dropped): export, merge and the records must
    not depend on when the per-step cache was last refreshed."""
    ctrl = get_controller(model)
    ctrl.drop_caches()
    state = ctrl.state(training=False)
    return ctrl, state, ctrl.plans(state)


@torch.no_grad()
def merge_structlora(model: nn.Module) -> nn.Module:
    """Fold every final update into its base weight and remove all StructLoRA modules (in place).

    The result is a plain model (e.g. ``LlavaForConditionalGeneration``) with no wrappers, hooks
    or coordinator, ready for ``save_pretrained``.
    """
    ctrl, _, plans = eval_plans(model)
    deltas = [layer.delta_weight(None if plans is None else plans[i]) for i, layer in enumerate(ctrl.layers)]
    ctrl.detach_hooks()
    for layer, delta in zip(ctrl.layers, deltas):
        base = layer.base_layer
        base.weight.add_(delta.to(base.weight.dtype))
        parent_name, _, child = layer.module_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, base)
    delattr(model, CONTROLLER_NAME)
    return model


def structlora_diagnostics(model: nn.Module, with_cosine_matrix: bool = False) -> dict[str, Any]:
    """``drift_energy``, ``cos_adj``, ``open_directions`` (+ gate stats, eta, lambda_max), factored."""
    ctrl, state, _ = eval_plans(model)
    out = diagnostics_from_state(state, ctrl.layers, ctrl.nodes, ctrl.graph.edges, ctrl.cfg.open_threshold)
    out["edges"] = ctrl.graph.kinds()
    if with_cosine_matrix:
        out["cosine_matrix"] = cosine_matrix(ctrl.layers, ctrl.nodes, state["m"], state["C"]).tolist()
    return out


def structlora_moved(model: nn.Module) -> dict[str, Any]:
    """What training moved: eval-gate histograms at init and now, open directions per layer,
    gate-parameter and eval-gate deltas, modulation mean, update norms per layer. JSON-able.

    The init is rebuilt from the config and seed (gates start at a config-determined value, B = 0), so
    the record is right on a resumed run too.
    """
    ctrl, state, _ = eval_plans(model)
    cfg, gate = ctrl.cfg, ctrl.layers[0].gate
    init = []
    if gate is not None:
        for layer in ctrl.layers:
            fresh = build_gate(cfg, device="cpu", generator_seed=name_seed(cfg.seed, layer.module_name))
            init.append({n: getattr(fresh, n).detach() for n in fresh.param_names})
    out = moved_from_state(
        state, ctrl.layers, ctrl.nodes, init, None if gate is None else type(gate), cfg, cfg.open_threshold
    )
    return out | {"smoothing": _smoothing_moved(ctrl, state)}


@torch.no_grad()
def _smoothing_moved(ctrl: StructLoRAController, state: dict[str, Any]) -> Optional[dict[str, Any]]:
    """What the coordinator moved: eq. (A)'s coefficient ``eta * a_lj`` (= ``C_lj``) per smoothing edge, at init
    (a fresh coordinator of the same seed on a fresh adapter's descriptors: all gates 1, B = 0) and now."""
    if state["C"] is None:
        return None
    from .coordinator import build_coordinator, structural_descriptors

    fresh = build_coordinator(ctrl.cfg, len(ctrl.kinds))  # the controller's own init recipe
    desc0 = structural_descriptors(ctrl.nodes, ctrl.cfg.r, ctrl.kinds) if fresh.gnn is not None else None
    zero = torch.zeros(ctrl.smooth.shape) if fresh.needs_coupling else None  # B = 0: no coupling measured yet
    C0 = fresh(desc0, ctrl.adj.cpu(), ctrl.smooth.cpu(), zero)["C"]
    C1 = state["C"].detach().float().cpu()
    edges = [(i, j) for i, j in ctrl.smooth.triu(1).nonzero().tolist()]
    name = lambda i, j: f"{ctrl.nodes[i].name} <-> {ctrl.nodes[j].name}"  # noqa: E731
    deltas = torch.tensor([float(C1[i, j] - C0[i, j]) for i, j in edges]).abs()
    return {
        "coef_init": {name(i, j): float(C0[i, j]) for i, j in edges},
        "coef_final": {name(i, j): float(C1[i, j]) for i, j in edges},
        "median_abs_delta": float(deltas.median()) if edges else None,
    }


# ---------------------------------------------------------------------- state / save / load
def _named_tensors(model: nn.Module, trainable_only: bool) -> dict[str, Tensor]:
    ctrl = get_controller(model)
    out: dict[str, Tensor] = {}
    for layer in ctrl.layers:
        out[f"{layer.module_name}.lora_A"] = layer.lora_A
        out[f"{layer.module_name}.lora_B"] = layer.lora_B
        if layer.gate is not None:
            for n in layer.gate.param_names:
                t = getattr(layer.gate, n)
                if not trainable_only or isinstance(t, nn.Parameter):
                    out[f"{layer.module_name}.gate.{n}"] = t
    src = dict(ctrl.named_parameters()) if trainable_only else ctrl.state_dict(keep_vars=True)
    out.update({f"{CONTROLLER_NAME}.{k}": v for k, v in src.items()})
    return out


def structlora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Trainable StructLoRA tensors only (names as in ``model.named_parameters()``), detached."""
    return {k: v.detach() for k, v in _named_tensors(model, trainable_only=True).items()}


def save_structlora(model: nn.Module, out_dir: str | Path) -> Path:
    """Config + graph JSON and a safetensors file of all StructLoRA tensors, written into ``out_dir``.

    Other files in ``out_dir`` are left alone (the Trainer saves its checkpoint state beside them).
    Each file is written atomically, weights first; the JSON records the weights' sha256, so a crash
    between the two writes is detected by ``load_structlora`` instead of mixing two saves.
    """
    ctrl = get_controller(model)
    out_dir = Path(out_dir)
    tensors = {
        k: v.detach().float() if v.is_floating_point() else v.detach()
        for k, v in _named_tensors(model, trainable_only=False).items()
    }
    atomic_save_safetensors(tensors, out_dir / WEIGHTS_FILE, metadata={"format": "pt", "structlora": FORMAT})
    meta = {
        "format": FORMAT,
        "config": ctrl.cfg.to_dict(),
        **ctrl.graph.to_json(),
        "step": int(ctrl.step),
        "weights_sha256": sha256_file(out_dir / WEIGHTS_FILE),
    }
    atomic_write_json(out_dir / CONFIG_FILE, meta)
    return out_dir


def load_structlora(model: nn.Module, in_dir: str | Path) -> nn.Module:
    """Restore a ``save_structlora`` directory onto a base model (applies StructLoRA if needed)."""
    from safetensors.torch import load_file

    in_dir = Path(in_dir)
    cfg_path, w_path = in_dir / CONFIG_FILE, in_dir / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (not a save_structlora directory)")
    meta = json.loads(cfg_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("weights_sha256") not in (None, sha256_file(w_path)):
        raise ValueError(f"{w_path}: sha256 differs from the one recorded in {cfg_path} (interrupted save?)")
    cfg = StructLoRAConfig.from_dict(meta["config"])
    if not isinstance(getattr(model, CONTROLLER_NAME, None), StructLoRAController):
        apply_structlora(model, cfg)
    ctrl = get_controller(model)
    names = [n.name for n in ctrl.nodes]
    if names != meta["nodes"]:
        raise ValueError(
            f"{cfg_path}: adapted modules differ from the model's: {sorted(set(names) ^ set(meta['nodes']))[:5]}"
        )
    saved = load_file(str(w_path))
    target = _named_tensors(model, trainable_only=False)
    missing, unexpected = sorted(set(target) - set(saved)), sorted(set(saved) - set(target))
    if missing or unexpected:
        raise ValueError(f"{w_path}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    with torch.no_grad():
        for k, t in target.items():
            if tuple(saved[k].shape) != tuple(t.shape):
                raise ValueError(f"{w_path}: tensor {k} has shape {tuple(saved[k].shape)}, expected {tuple(t.shape)}")
            t.copy_(saved[k].to(t.dtype))
    ctrl.set_graph(StructLoRAGraph.from_json(meta, ctrl.nodes, str(cfg_path)))
    ctrl._step = int(ctrl.step)
    return model


def load_structlora_graph(model: nn.Module, in_dir: str | Path) -> None:
    """Only the coordinator graph of a ``save_structlora`` directory (refreshed similarity edges are in no
    state dict; a DeepSpeed resume restores the tensors itself and the graph from here)."""
    cfg_path = Path(in_dir) / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: StructLoRA checkpoint without its config + graph")
    ctrl = get_controller(model)
    ctrl.set_graph(StructLoRAGraph.from_json(json.loads(cfg_path.read_text()), ctrl.nodes, str(cfg_path)))
