"""Data mixing: exact ratios, identical order on every rank, bad specs rejected with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from llava_structlora.data.mixing import DataMixError, MixedDataset, build_mixture, mixture_index, parse_sources, quotas

ROOT = Path(__file__).resolve().parents[2]


class Fake:
    """A source of n items tagged with its name (stands in for LazySupervisedDataset)."""

    def __init__(self, name: str, n: int):
        self.name, self.n = name, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> dict:
        return {"id": f"{self.name}:{j}"}


def test_ratios_are_honoured_exactly_and_records_spread_evenly():
    sizes, ratios = [1000, 300, 50], [0.5, 0.3, 0.2]
    mixed = MixedDataset([Fake(n, s) for n, s in zip("abc", sizes)], list("abc"), ratios, seed=0)
    assert len(mixed) == sum(sizes)
    got = Counter(mixed[i]["id"].split(":")[0] for i in range(len(mixed)))
    for name, r in zip("abc", ratios):
        assert abs(got[name] / len(mixed) - r) <= 1 / len(mixed)  # exact up to rounding, not in expectation
    per_record = Counter(mixed[i]["id"] for i in range(len(mixed)) if mixed[i]["id"].startswith("c:"))
    assert set(per_record.values()) <= {5, 6} and len(per_record) == 50  # 270 = 5.4 x 50: repeated evenly
    a_records = {mixed[i]["id"] for i in range(len(mixed)) if mixed[i]["id"].startswith("a:")}
    assert len(a_records) == got["a"]  # subsampled without replacement
    assert [c["samples"] for c in mixed.composition] == [got[n] for n in "abc"]


def test_quotas_sum_to_mix_size_and_concatenation_without_ratios():
    assert sum(quotas([10, 10, 10], [1 / 3] * 3, mix_size=100)) == 100
    assert quotas([7, 3], [None, None]) == [7, 3]
    assert quotas([7, 3], [None, None], mix_size=20) == [14, 6]


def test_same_seed_same_order_other_seed_other_order():
    sizes, counts = [40, 25, 9], [30, 30, 14]
    assert mixture_index(sizes, counts, 3) == mixture_index(sizes, counts, 3)
    assert mixture_index(sizes, counts, 3) != mixture_index(sizes, counts, 4)


_RANK_SCRIPT = """
import json, sys, torch
torch.manual_seed(int(sys.argv[1]))  # a rank's global RNG state must not matter
from llava_structlora.data.mixing import mixture_index
print(json.dumps(mixture_index([40, 25, 9], [30, 30, 14], seed=7)))
"""


def test_identical_on_every_rank():
    """Each rank computes the mixture in its own process (own RANK/WORLD_SIZE, own global RNG): same list."""
    outs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", PYTHONPATH=str(ROOT))
        res = subprocess.run(
            [sys.executable, "-c", _RANK_SCRIPT, str(100 + rank)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outs.append(json.loads(res.stdout))
    assert outs[0] == outs[1] == [list(p) for p in mixture_index([40, 25, 9], [30, 30, 14], seed=7)]


@pytest.mark.parametrize(
    "paths, ratios, needle",
    [
        ("a.json,b.json", "0.5", "has 1 values for 2 data_path entries"),
        ("a.json,b.json", "0.5,x", "'x' (for b.json) is not a number"),
        ("a.json,b.json", "0.5,-1", "'-1' (for b.json) must be a positive finite number"),
        ("a.json,b.json", "0.5,0", "must be a positive finite number"),
        ("a.json,b.json", "nan,1", "'nan' (for a.json) must be a positive finite number"),
        ("a.json,,b.json", None, "without empty entries"),
        ("a.json,a.json", "1,1", "lists a.json twice"),
    ],
)
def test_bad_specs_are_rejected_clearly(paths, ratios, needle):
    with pytest.raises(DataMixError, match=None) as e:
        parse_sources(paths, ratios)
    assert needle in str(e.value)


def test_ratios_are_relative_weights():
    assert [s.ratio for s in parse_sources("a,b,c", "2,1,1")] == [0.5, 0.25, 0.25]


def test_one_source_stays_the_plain_dataset():
    fake = Fake("a", 5)
    assert build_mixture(parse_sources("a.json"), lambda p: fake, seed=0) is fake
    with pytest.raises(DataMixError, match="mix_size=0"):
        build_mixture(parse_sources("a.json"), lambda p: fake, seed=0, mix_size=0)


def test_training_config_rejects_bad_specs_before_launch(tmp_path):
    from llava_structlora.train.cli import parse_args
    from llava_structlora.train.config import ConfigError

    base = ["--output_dir", str(tmp_path / "o")]
    with pytest.raises(ConfigError, match="has 1 values for 2"):
        parse_args(base + ["--data_path", "a.json,b.json", "--data_ratios", "1"], check_paths=False)
    with pytest.raises(ConfigError, match="mix_size=0"):
        parse_args(base + ["--data_path", "a.json,b.json", "--mix_size", "0"], check_paths=False)
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="b.json: file not found"):
        parse_args(
            base
            + [
                "--model_name_or_path",
                str(tmp_path / "m"),
                "--data_path",
                f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}",
            ]
        )


def test_real_sources_mixed_through_the_training_builder(world, processor):
    """build_dataset with two LLaVA JSON sources: the mixture holds real encoded items at the asked ratio."""
    from llava_structlora.train.config import DataArguments
    from llava_structlora.train.methods import build_dataset

    other = world.parent / "other.json"
    recs = json.loads(world.read_text())[:4]
    other.write_text(json.dumps([{**r, "id": f"o{r['id']}"} for r in recs]))
    dargs = DataArguments(data_path=f"{world},{other}", data_ratios="0.25,0.75", mix_size=16)
    ds = build_dataset(dargs, processor, seed=0)
    ids = [ds[i]["id"] for i in range(len(ds))]
    assert len(ids) == 16 and sum(i.startswith("o") for i in ids) == 12
    assert all(len(ds[i]["input_ids"]) == len(ds[i]["labels"]) for i in range(3))
    assert build_dataset(dargs, processor, seed=0).index == ds.index  # rebuilt (another rank): same order
