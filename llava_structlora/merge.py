"""Merge a trained run's adapter into its base: a plain LLaVA model on disk (1.5 or NeXT, as the base).

    python -m llava_structlora.merge RUN_DIR OUT_DIR [--base PATH] [--max-shard-size 5GB] [--dtype bf16]

(``bash scripts/merge_adapter.sh RUN_DIR OUT_DIR`` wraps this.) The output is what
``AutoModelForImageTextToText.from_pretrained(OUT_DIR)`` (or the base's own class,
``LlavaForConditionalGeneration`` / ``LlavaNextForConditionalGeneration``) loads with no project code:
``config.json``, ``generation_config.json``, safetensors shards (+ index) and the base's processor, whose
default chat template is the conversation format the run trained with (``run.json`` ``conv_template``).
Weights and tokenizer files use a layout that transformers 4.57 and 5.x both read (see portable.py).

Merging LoRA into LLaVA is where users get garbled outputs: almost always a wrong base (another
LLaVA size, a v1.5 adapter on a v1.6 base, a re-pretrained toy base). We therefore compare the
base against what the run was trained on *before* loading anything big, and refuse with a
message that lists every difference: architecture fields of the config and the shape of every
adapted module. The merge itself is stock PEFT (``merge_and_unload``), which is exact for the
stock LoRA adapter that StructLoRA exports (docs/design.md §2) and for the PEFT baselines.

The base is always reloaded unquantized, in ``--dtype`` (default: bf16 for a QLoRA run, whose
adapter was trained over a bf16-computing 4/8-bit base, else fp32): merging into 4-/8-bit storage
would round the update away, so a quantized base checkpoint is refused.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from llava_structlora.rundir import RunDir
from llava_structlora.utils.artifacts import check_adapter_dir
from llava_structlora.utils.errors import entry_point, note_output
from llava_structlora.utils.io import atomic_directory, atomic_write_json, check_output_dir
from llava_structlora.utils.jsonio import read_json
from llava_structlora.utils.locks import check_not_in_use, output_lock
from llava_structlora.utils.publish import debug_point

logger = logging.getLogger("llava_structlora.merge")

ADAPTER_WEIGHTS = "adapter_model.safetensors"
DTYPE_NAMES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
# Keys under which run.json may record the base (top level or in its "config"/"model"/"train" sections).
BASE_KEYS = ("base_model", "model_name_or_path", "base_model_name_or_path", "base")
# Config fields that must agree between the run's base and the base we merge into.
ARCH_FIELDS = (
    "model_type",
    "architectures",
    "image_token_id",
    "image_token_index",
    "vision_feature_layer",
    "vision_feature_select_strategy",
    "projector_hidden_act",
    "multimodal_projector_bias",
    "text_config.model_type",
    "text_config.hidden_size",
    "text_config.num_hidden_layers",
    "text_config.num_attention_heads",
    "text_config.num_key_value_heads",
    "text_config.intermediate_size",
    "text_config.vocab_size",
    "text_config.head_dim",
    "vision_config.model_type",
    "vision_config.hidden_size",
    "vision_config.num_hidden_layers",
    "vision_config.num_attention_heads",
    "vision_config.intermediate_size",
    "vision_config.image_size",
    "vision_config.patch_size",
    "vision_config.projection_dim",
    "image_grid_pinpoints",
)
_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_E|lora_magnitude_vector)"
    r"(?:\.[A-Za-z_]+)*(?:\.weight)?$"
)


class BaseMismatchError(ValueError):
    """The base model is not the one the adapter was trained on."""


# ---------------------------------------------------------------------------- run directory
def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json of a training run (may be absent for a bare adapter dir)."""
    return RunDir(run_dir).read_run()


def adapter_dir_of(run_dir: Path) -> Path:
    """RUN_DIR/adapter (training layout) or RUN_DIR itself when it is a PEFT adapter dir."""
    cand = RunDir(run_dir).peft_adapter()
    if cand is not None:
        check_adapter_dir(cand)  # torn config, pickled .bin, garbled weights, edited rank: named here
        return cand
    raise FileNotFoundError(
        f"{run_dir}: no PEFT adapter found (expected {run_dir}/adapter/adapter_config.json); "
        f"is this a training output directory?"
    )


def recorded_base(run_dir: Path) -> str | None:
    """The base the run was trained on: run.json first, then the adapter's own config."""
    run = read_run(run_dir)
    scopes = [run] + [run[k] for k in ("config", "model", "train") if isinstance(run.get(k), dict)]
    for scope in scopes:
        for key in BASE_KEYS:
            val = scope.get(key)
            if isinstance(val, str) and val:
                return val
    try:
        cfg = read_json(adapter_dir_of(run_dir) / "adapter_config.json", "adapter config")
    except FileNotFoundError:
        return None
    if not isinstance(cfg, dict):
        raise ValueError(f"{adapter_dir_of(run_dir) / 'adapter_config.json'}: expected a JSON object")
    return cfg.get("base_model_name_or_path") or None


def recorded_conv_template(run_dir: Path) -> str:
    """The conversation format the run trained with (run.json; rundir.RunDir.conv_template)."""
    return RunDir(run_dir).conv_template()


# ---------------------------------------------------------------------------- compatibility
def config_field(cfg: dict[str, Any], dotted: str) -> Any:
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def load_config_dict(model_dir: str | Path) -> dict[str, Any]:
    """config.json of a local model directory, with the sub-configs filled by transformers defaults."""
    from transformers import AutoConfig

    path = Path(model_dir)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path}/config.json not found: the base must be a local model directory "
            f"(no downloads here); pass --base /path/to/llava-1.5-7b-hf"
        )
    return AutoConfig.from_pretrained(str(path)).to_dict()


def architecture_diff(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Human-readable differences in the architecture fields (ignores fields absent in both)."""
    diffs = []
    for f in ARCH_FIELDS:
        a, b = config_field(expected, f), config_field(actual, f)
        if a != b and not (a is None or b is None):
            diffs.append(f"config {f}: run was trained on {a!r}, this base has {b!r}")
    return diffs


def adapter_shapes(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, read from the (checked) safetensors header only (no weights loaded)."""
    from llava_structlora.utils.artifacts import tensor_shapes

    return tensor_shapes(adapter_dir / ADAPTER_WEIGHTS)


def shape_diff(adapter_dir: Path, base_config: dict[str, Any]) -> list[str]:
    """Check every adapter tensor against the base's module shapes, on the meta device."""
    import torch
    from transformers import AutoConfig

    from llava_structlora.modeling import base_model_class
    from llava_structlora.portable import v5_key

    cfg = AutoConfig.for_model(**base_config) if "model_type" in base_config else base_config
    with torch.device("meta"):
        model = base_model_class(cfg)(cfg)
    modules = dict(model.named_modules())
    params = {n: tuple(p.shape) for n, p in model.named_parameters()}
    diffs = []
    for key, shape in sorted(adapter_shapes(adapter_dir).items()):
        m = _LORA_KEY.match(key)
        if m is None:  # modules_to_save (e.g. a fully trained projector): compare with the base parameter
            name = v5_key(re.sub(r"^base_model\.model\.", "", key).replace(".modules_to_save.default", ""))
            if name in params and params[name] != shape:
                diffs.append(f"{name}: adapter holds {shape}, base has {params[name]}")
            elif name not in params:
                diffs.append(f"{name}: in the adapter but not a parameter of this base")
            continue
        mod = modules.get(v5_key(m.group("module")))  # releases store the transformers-4 spelling
        if mod is None or not hasattr(mod, "in_features"):
            diffs.append(f"{m.group('module')}: adapted in the run, no such linear layer in this base")
            continue
        kind = m.group("kind")
        want = {
            "lora_A": (shape[0], mod.in_features),
            "lora_B": (mod.out_features, shape[-1]),
            "lora_magnitude_vector": (mod.out_features,),
        }.get(kind)
        if want is not None and tuple(shape[-len(want) :]) != want:
            diffs.append(
                f"{m.group('module')}.{kind}: adapter shape {shape}, base layer is "
                f"{mod.out_features}x{mod.in_features} (expects {want})"
            )
    return diffs


def check_base(run_dir: Path, base: str | Path) -> None:
    """Raise BaseMismatchError listing every difference between `base` and the run's base."""
    adapter = adapter_dir_of(run_dir)
    actual = load_config_dict(base)
    diffs: list[str] = []
    trained_on = recorded_base(run_dir)
    if trained_on and Path(trained_on, "config.json").exists() and Path(trained_on).resolve() != Path(base).resolve():
        diffs += architecture_diff(load_config_dict(trained_on), actual)
    diffs += shape_diff(adapter, actual)
    if diffs:
        shown = "\n  - ".join(diffs[:20]) + (f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
        raise BaseMismatchError(
            f"refusing to merge: base {base} does not match the base this adapter was trained on "
            f"({trained_on or 'unknown'}):\n  - {shown}"
        )


# ---------------------------------------------------------------------------- merge
MERGE_KIND = "merged-model"


class QuantizedMergeError(ValueError):
    """The merge target stores its weights in 4/8 bit: the merged update would be rounded away."""


def check_not_quantized(base: str | Path) -> None:
    """Refuse a base checkpoint saved quantized (config.json carries a quantization_config)."""
    qcfg = load_config_dict(base).get("quantization_config")
    if qcfg:
        raise QuantizedMergeError(
            f"refusing to merge into {base}: it is stored quantized ({qcfg.get('quant_method', 'unknown')}, "
            f"load_in_4bit={qcfg.get('load_in_4bit')}, load_in_8bit={qcfg.get('load_in_8bit')}); merging into "
            f"quantized storage rounds the adapter update away. Pass the original bf16/fp16 base with --base "
            f"(a QLoRA run merges into its unquantized base, reloaded in --dtype bf16)"
        )


def default_merge_dtype(run_dir: Path) -> str:
    """bf16 for a QLoRA run (its compute dtype), else fp32 (bit-exact against base + adapter)."""
    run = read_run(run_dir)
    model_args = run.get("config", {}).get("ModelArguments", {}) if isinstance(run.get("config"), dict) else {}
    return "bf16" if model_args.get("bits") else "fp32"


def merge_run(
    run_dir: str | Path,
    out_dir: str | Path,
    base: str | Path | None = None,
    max_shard_size: str = "5GB",
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Check the base, merge with stock PEFT and save_pretrained model + processor into `out_dir`.

    `out_dir` is checked first (utils.io.check_output_dir): never the run, the base or a folder of
    the user's; a previous merged model only with `overwrite`. `out_dir` is locked for the whole
    merge and the run dir is checked not to be training at the start and before publishing
    (utils.locks: either makes this one exit 2); the output is published by one rename (utils.publish).
    """
    run_dir = Path(run_dir)
    note_output(out_dir, "merged model")
    with output_lock(out_dir, "merge"):
        check_not_in_use(run_dir, "merge (reads the run)")
        return _merge_locked(run_dir, Path(out_dir), base, max_shard_size, dtype, overwrite)


def _merge_locked(
    run_dir: Path, out_dir: Path, base: str | Path | None, max_shard_size: str, dtype: str | None, overwrite: bool
) -> Path:
    from transformers import AutoProcessor

    from llava_structlora.data.chat_template import attach_chat_templates
    from llava_structlora.modeling import load_base_model
    from llava_structlora.portable import SUPPORTED_TRANSFORMERS, base_tokenizer_class, make_portable
    from llava_structlora.utils.strict_load import peft_from_pretrained_strict

    base = base or recorded_base(run_dir)
    if not base:
        raise ValueError(f"{run_dir}: no base recorded in run.json or adapter_config.json; pass --base")
    adapter = adapter_dir_of(run_dir)
    protected = {"run dir": run_dir, "adapter dir": adapter, "base dir": base}
    check_output_dir(out_dir, MERGE_KIND, overwrite, protected)  # before minutes of loading
    check_base(run_dir, base)
    check_not_quantized(base)
    dtype = dtype or default_merge_dtype(run_dir)
    model = load_base_model(base, dtype=dtype)  # never quantized: bits is not passed
    merged = peft_from_pretrained_strict(model, adapter).merge_and_unload()
    merged.eval()
    conv_template = recorded_conv_template(run_dir)
    processor = attach_chat_templates(AutoProcessor.from_pretrained(str(base)), conv_template)
    debug_point("merge-loaded")
    with atomic_directory(out_dir, kind=MERGE_KIND, overwrite=overwrite, protected=protected, locked=True) as tmp:
        merged.save_pretrained(tmp, max_shard_size=max_shard_size)
        debug_point("merge-saved-weights")
        processor.save_pretrained(tmp)
        portable = make_portable(tmp, tokenizer_class=base_tokenizer_class(base))  # loads under v4 and v5
        info = {
            "base": str(base),
            "adapter": str(adapter.resolve()),
            "dtype": dtype,
            "max_shard_size": max_shard_size,
            "conv_template": conv_template,
            "portable": portable,
            "transformers": list(SUPPORTED_TRANSFORMERS),
        }
        atomic_write_json(tmp / "merge_info.json", info)
        check_not_in_use(run_dir, "merge (reads the run)")  # a training started meanwhile: refuse, publish nothing
    logger.info("merged %s into %s -> %s", adapter, base, out_dir)
    return out_dir


@entry_point("merge")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="training output dir (with adapter/ and run.json) or a PEFT adapter dir")
    ap.add_argument("out_dir", help="where to write the merged model")
    ap.add_argument("--base", help="base model dir (default: the one recorded in run.json / adapter_config.json)")
    ap.add_argument("--max-shard-size", default="5GB", help="safetensors shard size (save_pretrained)")
    ap.add_argument(
        "--dtype",
        default=None,
        choices=sorted(DTYPE_NAMES),
        help="dtype the base is reloaded and merged in (default: bf16 for a QLoRA run, else fp32)",
    )
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT_DIR when it holds a previous merged model (never any other folder)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = merge_run(args.run_dir, args.out_dir, args.base, args.max_shard_size, args.dtype, args.overwrite)
    print(f"merged model written to {out}\nload it with: AutoModelForImageTextToText.from_pretrained({str(out)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
