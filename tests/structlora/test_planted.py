"""Planted problems: the IB filter and the coordinator on problems whose answer is known.

Deterministic (fixed seeds), CPU, a few seconds per run. The numbers behind the thresholds are recorded by
experiments/planted.py (docs/results/planted_problems.json); the thresholds test the measured behaviour.
"""

from __future__ import annotations

import pytest

from llava_structlora.structlora import StructLoRAConfig
from llava_structlora.structlora.planted import CoordinatorProblem, FilterProblem, Schedule, run_coordinator, run_filter

FILTER = FilterProblem()


# The IB strength at which the filter separates the planted directions (gate_lr_mult at its default, 300).
SEPARATING_LAMBDA = 1e-2


@pytest.mark.parametrize("seed", [1, 2])
def test_ib_filter_closes_nuisance_directions_and_keeps_true_ones(seed):
    """Recipe schedule (lr 2e-4, 250 steps), default gate_lr_mult: the k true directions of every layer stay
    open, most of the r - k noise-only directions close."""
    res = run_filter(FILTER, StructLoRAConfig(lambda_ib=SEPARATING_LAMBDA), Schedule(), seed)
    assert res["true_kept"] == 1.0, res["eval_gate_final"]
    assert res["nuisance_closed"] >= 0.75, res["eval_gate_final"]
    assert res["median_abs_param_delta"] > 1.0  # log_alpha units


def test_default_lambda_moves_the_gates_but_closes_no_planted_nuisance_direction():
    """FINDING (docs/structlora.md): the shipped lambda_ib=1e-3 was kept because 1e-2 closed 65 % of the real
    recipe's directions and cost 29 CIDEr; at 1e-3 the gates move (well above the old setup) but on this
    problem the noise-fitting gain of a nuisance direction outweighs the IB price, so none closes."""
    res = run_filter(FILTER, StructLoRAConfig(), Schedule(), 1)
    assert res["true_kept"] == 1.0 and res["median_abs_param_delta"] > 0.5
    assert res["nuisance_closed"] < 0.25


def test_old_optimizer_setup_leaves_the_gates_in_place():
    """The setup before the trainability fixes: gates in the weight-decay group at the LoRA lr, old init
    (eval gate 0.674), IB averaged over layers. Same problem, same schedule: the gates do not move, nothing closes."""
    old = StructLoRAConfig(gate_init=0.674, lambda_ib=1e-3 / FILTER.n_layers)
    res = run_filter(FILTER, old, Schedule(old_optimizer=True), 1)
    assert res["median_abs_param_delta"] < 0.05
    assert res["median_abs_eval_gate_delta"] < 0.02
    assert res["nuisance_closed"] == 0.0


COORD = CoordinatorProblem()
# Each method at the best lr of a grid {3e-3, 1e-2, 3e-2, 1e-1} measured on seeds 0-3 (experiments/planted.py);
# the assertion runs on seeds never used for that choice.
LORA_LR, COORD_LR = 3e-2, 1e-2


def test_coordinator_beats_lora_on_smooth_depth_updates_with_little_data():
    lora_cfg = StructLoRAConfig(filter="none", coordinator="none")
    coord_cfg = StructLoRAConfig(filter="none")
    for seed in (10, 11, 12):
        lora = run_coordinator(COORD, lora_cfg, Schedule(lr=LORA_LR, steps=150), seed)
        coord = run_coordinator(COORD, coord_cfg, Schedule(lr=COORD_LR, steps=150), seed)
        assert coord["rel_update_error"] < lora["rel_update_error"], (seed, coord, lora)


def test_free_edge_weights_learn_to_switch_the_smoothing_off():
    """FINDING (docs/structlora.md): with edge_weights=free the GNN also sets how much to smooth; trained on the
    task loss alone it removes the smoothing (a regulariser trained on the training loss undoes itself), and the
    held-out error goes back to LoRA's. The default (normalized) keeps the strength at smooth_eta."""
    free = run_coordinator(
        COORD,
        StructLoRAConfig(filter="none", coordinator="gnn", edge_weights="free"),
        Schedule(lr=COORD_LR, steps=150),
        10,
    )
    norm = run_coordinator(
        COORD, StructLoRAConfig(filter="none", coordinator="gnn"), Schedule(lr=COORD_LR, steps=150), 10
    )
    f, n = free["smoothing_coef_mean"], norm["smoothing_coef_mean"]
    assert f["coef_init"] == pytest.approx(n["coef_init"])  # both start as the fixed Laplacian
    assert f["coef_final"] < 0.25 * f["coef_init"]
    assert n["coef_final"] == pytest.approx(n["coef_init"], rel=1e-4)  # mean weight 1: same total strength
    assert free["rel_update_error"] > norm["rel_update_error"]


def test_measured_coupling_recovers_a_heterogeneous_coupling_a_fixed_smoother_cannot_use():
    """(c) of experiments/planted_hard.py at its tuned settings (lr / smooth_eta picked on seeds 0-3): on seeds
    never used for that choice the measured coupling's edge weights rank the edges as the truth does (+1 > 0 > -1)
    and its held-out error beats plain LoRA and the tuned fixed smoother."""
    from scipy.stats import spearmanr

    from llava_structlora.structlora.planted_hard import CouplingProblem, run_coupling

    p = CouplingProblem()
    for seed in (10, 11):
        lora = run_coupling(p, StructLoRAConfig(filter="none", coordinator="none"), Schedule(lr=3e-2, steps=150), seed)
        fixed = run_coupling(
            p,
            StructLoRAConfig(filter="none", coordinator="laplacian", smooth_eta=0.1),
            Schedule(lr=3e-2, steps=150),
            seed,
        )
        cpl = run_coupling(
            p,
            StructLoRAConfig(filter="none", coordinator="coupling", smooth_eta=1.0),
            Schedule(lr=1e-2, steps=150),
            seed,
        )
        assert spearmanr(cpl["edge_weights"], p.coupling)[0] > 0.7, cpl["edge_weights"]
        assert cpl["effective_edges_init"] == 0.0 and cpl["effective_edges"] > 4.0  # no collapse onto a few edges
        assert cpl["rel_update_error"] < min(lora["rel_update_error"], fixed["rel_update_error"]) - 0.03


def test_noise_fitted_nuisance_directions_are_as_large_as_true_ones():
    """(d): LoRA's norms separate true from nuisance directions only narrowly (min true / max nuisance ratio
    around 1, against >= 2.2 on problem (a)); the IB gate filters on held-out data but is far from the oracle
    (FINDING, planted_structure record: it does not beat norm-threshold pruning at the rank it keeps)."""
    from llava_structlora.structlora.planted_hard import NoisyFilterProblem, run_noisy_filter

    res = run_noisy_filter(NoisyFilterProblem(), 0.1, 10)
    assert max(res["norm_ratio_per_layer"]) < 1.3
    assert res["ib"]["rel_update_error"] < res["lora"]["rel_update_error"]  # filtering helps held-out ...
    oracle = res["oracle"]["rel_update_error"]
    assert res["ib"]["rel_update_error"] > oracle + 0.1  # ... but it is far from knowing the true directions
