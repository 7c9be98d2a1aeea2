"""recipes.finetune: precedence (dataclass default < YAML < flag < set env var), run name from the parsed
config, refusal of a mismatched resume, and the layering rules (the library never imports data_prep/recipes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recipes import finetune
from recipes.layout import RepoLayout

ROOT = Path(__file__).resolve().parents[2]
ENV_VARS = (
    "MODEL",
    "DATA_ROOT",
    "OUTPUT_DIR",
    "METHOD",
    "RANK",
    "SEED",
    "DATA_FRACTION",
    "RESUME",
    "ZERO",
    "SMOKE",
    "NO_DEEPSPEED",
    "EVAL",
    "ARCH",
)


@pytest.fixture
def layout(tmp_path, monkeypatch) -> RepoLayout:
    """A checkout-like root whose smoke YAML sets lora_r: 4 (and no recipe env var is set)."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "coco_smoke.yaml").write_text("task: coco\nlora_r: 4\nmax_steps: 6\n")
    (tmp_path / "configs" / "coco.yaml").write_text("task: coco\n")
    return RepoLayout(tmp_path)


def _parsed(layout: RepoLayout, *cli: str, preset: str = "smoke"):
    from llava_structlora.train.cli import parse_args

    argv = finetune.train_argv(layout, "coco", preset, list(cli))
    return parse_args(argv, check_paths=False, with_deepspeed=False)


def test_yaml_value_used_when_nothing_overrides_it(layout):
    m, d, _, t = _parsed(layout)
    assert m.lora_r == 4 and t.max_steps == 6
    assert t.output_dir == str(layout.outputs / "coco-structlora-r4-s0-smoke")
    assert m.model_name_or_path == str(layout.base("smoke")) and d.data_root == str(layout.data("smoke"))
    assert d.data_path == str(layout.data("smoke") / "coco" / "llava_train.json")
    assert t.resume == "auto" and t.run_eval is False and t.deepspeed.endswith("zero2.json")


def test_flag_beats_yaml_and_names_the_run(layout):
    m, _, _, t = _parsed(layout, "--lora_r", "16", "--seed", "3")
    assert m.lora_r == 16 and t.output_dir == str(layout.outputs / "coco-structlora-r16-s3-smoke")


def test_set_env_var_beats_flag_unset_or_empty_does_not(layout, monkeypatch):
    monkeypatch.setenv("RANK", "")
    assert _parsed(layout, "--lora_r", "16")[0].lora_r == 16
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("METHOD", "lora")
    m, _, _, t = _parsed(layout, "--lora_r", "16")
    assert (m.method, m.lora_r) == ("lora", 2) and t.output_dir.endswith("coco-lora-r2-s0-smoke")
    monkeypatch.setenv("DATA_ROOT", "/elsewhere")
    monkeypatch.setenv("OUTPUT_DIR", "/runs/x")
    _, d, _, t = _parsed(layout)
    assert d.data_path == "/elsewhere/coco/llava_train.json" and t.output_dir == "/runs/x"


def test_arch_next_selects_the_next_base_and_run_name(layout, monkeypatch):
    monkeypatch.setenv("ARCH", "next")
    m, _, _, t = _parsed(layout)
    assert m.model_name_or_path == str(layout.base("smoke", "next")) and t.output_dir.endswith("-r4-s0-next-smoke")
    monkeypatch.setenv("MODEL", "/models/llava-1.5-7b-hf")  # a given base: no suffix
    assert _parsed(layout)[3].output_dir.endswith("coco-structlora-r4-s0-smoke")
    monkeypatch.setenv("ARCH", "qwen")
    with pytest.raises(ValueError, match="ARCH='qwen'"):
        _parsed(layout)


def test_smoke_means_the_same_preset_for_training_and_evaluation(layout, monkeypatch):
    from recipes.env import preset

    monkeypatch.setenv("SMOKE", "0")
    assert preset() == "default"
    monkeypatch.setenv("SMOKE", "1")
    assert preset() == "smoke"
    monkeypatch.setenv("SMOKE", "maybe")
    with pytest.raises(ValueError, match="SMOKE='maybe'"):
        preset()


def test_no_rank_default_in_the_recipes():
    """The rank default is written once (StructLoRAConfig.r): not in the shell recipes nor the YAML."""
    for path in [*ROOT.glob("scripts/*.sh"), *ROOT.glob("eval/*.sh"), *ROOT.glob("configs/*.yaml")]:
        text = path.read_text()
        assert not re.search(r"RANK:-|^lora_r:", text, re.M), path
        assert "export METHOD=" not in text, path


def test_mismatched_resume_is_refused_listing_the_differences(tmp_path):
    from llava_structlora.rundir import ResumeMismatchError, RunDir, check_resume_identity

    run = RunDir(tmp_path)
    check_resume_identity(run, {"lora_r": 8})  # nothing recorded yet: a new run
    run.identity_json.write_text(json.dumps({"lora_r": 8, "method": "structlora", "targets": "qv"}))
    check_resume_identity(run, {"lora_r": 8, "method": "structlora", "targets": "qv"})
    with pytest.raises(ResumeMismatchError) as e:
        check_resume_identity(run, {"lora_r": 16, "method": "lora", "targets": "qv"})
    assert "lora_r: 8 -> 16" in str(e.value) and "method: 'structlora' -> 'lora'" in str(e.value)
    assert "targets" not in str(e.value)


def test_library_imports_neither_data_prep_nor_recipes():
    """Layering: data_prep and the recipes use the library, never the reverse (imports and __file__ roots)."""
    lib = ROOT / "llava_structlora"
    for path in lib.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(data_prep|recipes)\b", text, re.M), path
        assert "parents[2]" not in text and "parents[1]" not in text, f"{path}: derives the checkout root"
    code = (
        "import sys, llava_structlora.train.main, llava_structlora.evaluation.run; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('data_prep', 'recipes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_rank_flag_gives_r16_run_dir_and_adapter_and_mismatched_resume_is_refused(tmp_path, smoke, monkeypatch, capfd):
    """`--lora_r 16` (no RANK, no OUTPUT_DIR) trains r=16 into <outputs>/coco-structlora-r16-s0-smoke; resuming
    that directory with another method and rank is refused before anything is launched."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("configs", "zero_configs"):
        (root / name).symlink_to(ROOT / name)
    layout = RepoLayout(root)
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    env = {
        "SMOKE": "1",
        "NO_DEEPSPEED": "1",
        "NUM_GPUS": "1",
        "EVAL": "0",
        "MODEL": str(smoke["base"]),
        "DATA_ROOT": str(smoke["data"]),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert finetune.main(["--task", "coco", "--lora_r", "16"], layout=layout) == 0
    run = layout.outputs / "coco-structlora-r16-s0-smoke"
    assert sorted(p.name for p in layout.outputs.iterdir()) == [run.name]
    assert json.loads((run / "structlora" / "structlora_config.json").read_text())["config"]["r"] == 16
    assert json.loads((run / "run.json").read_text())["config"]["ModelArguments"]["lora_r"] == 16
    from safetensors.torch import load_file

    factors = {
        k: v
        for k, v in load_file(str(run / "structlora" / "structlora_model.safetensors")).items()
        if k.endswith(".lora_A")
    }
    assert factors and all(v.shape[0] == 16 for v in factors.values())
    assert (run / "adapter" / "adapter_config.json").is_file()
    capfd.readouterr()
    monkeypatch.setenv("OUTPUT_DIR", str(run))
    monkeypatch.setenv("METHOD", "lora")
    assert finetune.main(["--task", "coco"], layout=layout) == 2
    err = capfd.readouterr()
    assert "refusing to resume" in err.err and "method: 'structlora' -> 'lora'" in err.err
    assert "lora_r: 16 -> 8" in err.err and "llava_structlora.train" not in err.out


def test_mix_recipe_reads_the_three_tasks_with_its_ratios(monkeypatch):
    """--task mix (configs/mix_smoke.yaml): one mixture of the three tasks' files, equal thirds, own run name."""
    from llava_structlora.train.cli import parse_args

    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    layout = RepoLayout(ROOT)
    _, d, _, t = parse_args(finetune.train_argv(layout, "mix", "smoke", []), check_paths=False, with_deepspeed=False)
    assert d.task == "mix" and d.data_ratios == "1,1,1"
    assert d.data_path.split(",") == [
        str(layout.data("smoke") / k / "llava_train.json") for k in ("coco", "vqav2", "gqa")
    ]
    assert t.output_dir == str(layout.outputs / "mix-structlora-r8-s0-smoke")
    monkeypatch.setenv("DATA_ROOT", "/elsewhere")
    _, d, _, _ = parse_args(finetune.train_argv(layout, "mix", "smoke", []), check_paths=False, with_deepspeed=False)
    assert d.data_path.split(",")[2] == "/elsewhere/gqa/llava_train.json"
