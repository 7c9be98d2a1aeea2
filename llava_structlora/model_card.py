"""Model card (README.md) and upload instructions of a release folder (see release.py).

Everything in the card comes from the run's own files (run.json, metrics.json, the adapter
config): no number is typed by hand, and a missing file shows up as "not recorded".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHOD_TEXT = {
    "structlora": (
        'StructLoRA ("Not All Directions Matter", ACL 2026): LoRA whose rank-one directions are '
        "gated by an Information-Bottleneck filter and whose layer updates are coordinated by a small "
        "graph network over a joint vision <-> language layer graph during training. Gates and "
        "coordinator are folded into the exported factors: this is a plain LoRA adapter."
    ),
    "lora": "LoRA (Hu et al., 2022) via PEFT.",
    "dora": "DoRA (Liu et al., 2024) via PEFT (`use_dora=True`).",
    "adalora": "AdaLoRA (Zhang et al., 2023) via PEFT.",
    "lora_dropout": "LoRA with input dropout (LoRA-Dropout baseline) via PEFT.",
}
PROTOCOL_TEXT = {
    "coco": (
        "COCO captions, Karpathy split of the evaluated data; greedy decoding; CIDEr/BLEU-4/ROUGE-L/METEOR "
        "from pycocoevalcap (PTBTokenizer, corpus-level over the scored images; CIDEr on the pycocoevalcap "
        "scale, x100 = the paper's numbers)."
    ),
    "vqav2": (
        "VQAv2 official accuracy: min(1, #humans who gave the answer / 3) averaged over the 10 leave-one-out "
        "subsets, official answer normalization; protocol `llava` first applies LLaVA's EvalAI answer processor."
    ),
    "gqa": "GQA exact-match accuracy on balanced questions; protocol `llava` strips a trailing period and lowercases.",
}
# What the snippet imports, pinned to the versions of the environment that writes the card (= requirements.txt,
# tested): torch/torchvision/Pillow unpinned. torchvision: transformers' image processors resize with it
# (without it they fall back to PIL, whose resize differs, docs/release.md). tests/release/test_card_snippet.py
# runs the snippet in a venv holding only these packages (and their dependencies).
PINNED = ("transformers", "peft")
UNPINNED = ("torch", "torchvision", "pillow")
BASE_PLACEHOLDER, ADAPTER_PLACEHOLDER, IMAGE_PLACEHOLDER = "path/to/base", "path/to/this/folder", "path/to/image.jpg"
LOAD_SNIPPET = """```python
# pip install {packages}
import torch
from PIL import Image
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

base = AutoModelForImageTextToText.from_pretrained("{base}", dtype="auto"){base_note}
model = PeftModel.from_pretrained(base, "{adapter}").merge_and_unload()  # zero inference overhead
processor = AutoProcessor.from_pretrained("{processor}")
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "{question}"}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=Image.open("{image}").convert("RGB"), text=prompt, return_tensors="pt")
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=48, do_sample=False)
print(processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
```"""
QUESTIONS = {"coco": "Describe the image.", "vqav2": "What color is the circle?", "gqa": "What shape is it?"}


def snippet_packages() -> list[str]:
    """The pip requirements of the snippet: transformers and peft at the versions that wrote this card."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in PINNED] + list(UNPINNED)


def public(value: Any) -> Any:
    """A value fit for a public card: an absolute local path is shown by its last two parts only."""
    if isinstance(value, str) and value.startswith("/") and " " not in value:
        return "/".join(Path(value).parts[-2:])
    return value


def is_hub_id(base: str) -> bool:
    return not base.startswith(("/", ".", "~")) and base.count("/") == 1


def _flatten(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """(dotted key, scalar) rows of a nested metrics dict."""
    if isinstance(obj, dict) and depth < 4:
        rows: list[tuple[str, Any]] = []
        for k, v in obj.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
        return rows
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return [(prefix, obj)]
    return [(prefix, json.dumps(obj)[:80])]


def _targets(tm: Any) -> str:
    if isinstance(tm, list):
        return f"{len(tm)} modules (`{tm[0]}`, ..., `{tm[-1]}`)" if len(tm) > 2 else f"`{tm}`"
    if isinstance(tm, str) and len(tm) > 160:
        return f"regex `{tm[:150]}...` ({tm.count('|') + 1} alternatives; full text in adapter_config.json)"
    return f"`{tm}`"


def compatibility_section() -> list[str]:
    """Which transformers versions the release is tested under (portable.py, tests/release/test_portable.py)."""
    from llava_structlora.portable import SUPPORTED_TRANSFORMERS

    versions = " and ".join(f"{v}.x" for v in SUPPORTED_TRANSFORMERS)
    return [
        "## Compatibility",
        "",
        f"Tested under transformers {versions} (PEFT 0.21): the snippet above gives the same pixels, logits and "
        "generated answer under both, on a non-square photograph. The adapter's weight keys use the "
        "transformers-4 module names (`vision_tower.vision_model...`, which transformers 5 converts on load) and "
        "its `target_modules` match both spellings, so the vision-tower factors attach under either version; the "
        "processor names the torchvision image processor (`...Fast` under transformers 4), as transformers 5 uses.",
        "",
    ]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(public(v))


def metrics_section(metrics: dict[str, Any], base_metrics: dict[str, Any], task: str | None) -> list[str]:
    """The adapter's validation scores next to the untuned base's (same split, same scorer), with the gain."""
    if not metrics:
        return ["Not recorded (the run was trained with `EVAL=0`). Evaluate with `bash eval/<task>.sh`."]
    same = all(base_metrics.get(k) == metrics.get(k) for k in ("split", "n", "protocol"))
    base_metrics = base_metrics if same else {}  # scored on other questions: not a comparison
    base = dict(_flatten(base_metrics))
    lines = ["| metric | adapter | base | gain |", "| --- | --- | --- | --- |"]
    for k, v in _flatten(metrics):
        if not isinstance(v, float) or k.endswith("_s"):  # scores only (counts, timings: metrics.json)
            continue
        b = base.get(k)
        gain = f"{v - b:+.4g}" if isinstance(b, float) else ""
        lines.append(f"| {k} | {_fmt(v)} | {_fmt(b) if isinstance(b, float) else 'not recorded'} | {gain} |")
    context = {k: metrics.get(k) for k in ("split", "n", "protocol", "conv_template") if metrics.get(k) is not None}
    lines += ["", "Scored on: " + ", ".join(f"{k} `{v}`" for k, v in context.items()) + " (metrics.json"]
    lines[-1] += ", metrics_base.json)." if base_metrics else ")."
    if not base_metrics:
        lines += [
            "",
            "Base: not recorded on the same questions (the recipes `scripts/finetune_<task>.sh` score it next to "
            "the adapter).",
        ]
    proto = PROTOCOL_TEXT.get(task or "")
    if proto:
        lines += ["", f"Protocol: {proto}"]
    return lines


PARTS = (("vision_tower", "vision tower"), ("multi_modal_projector", "projector"), ("language_model", "language model"))


def _part(module: str) -> str:
    return next((label for key, label in PARTS if key in module), "other")


def coverage_section(adapter_modules: list[str], export_info: dict[str, Any], moved: dict[str, Any]) -> list[str]:
    """Which parts of the model the adapter changes, from the run's records (export info, what-moved record).

    StructLoRA may close every rank direction of a module (its IB gates); the export then drops the module,
    so a run that adapted the vision tower can ship an adapter that leaves it untouched: say so plainly."""
    final = (moved.get("open_directions") or {}).get("final") or {}
    init = (moved.get("open_directions") or {}).get("init") or {}
    trained = sorted(set(final) | set(export_info.get("empty_modules") or []) | set(adapter_modules))
    lines = [
        "| part | modules adapted in training | modules this adapter changes | rank directions open at the end |",
        "| --- | --- | --- | --- |",
    ]
    plain = []
    for label in dict.fromkeys(_part(m) for m in trained):
        t = [m for m in trained if _part(m) == label]
        kept = [m for m in adapter_modules if _part(m) == label]
        opened = f"{sum(final.get(m, 0) for m in t)} of {sum(init.get(m, 0) for m in t)}" if final else "n/a"
        lines.append(f"| {label} | {len(t)} | {len(kept)} | {opened} |")
        if not kept:
            why = "its gates closed every rank direction during training" if final else "the export has no factors"
            plain.append(f"**This adapter does not change the {label}**: {why}, so it was dropped from the export.")
        elif len(kept) < len(t):
            plain.append(f"The {label}: {len(t) - len(kept)} of its {len(t)} adapted modules closed all directions.")
    return lines + ([""] + plain if plain else [])


def _run_field(run: dict[str, Any], *keys: str) -> Any:
    """First value found under `keys` at the top level of run.json or in one of its sections."""
    scopes = [run] + [v for v in run.values() if isinstance(v, dict)]
    scopes += [w for v in scopes[1:] for w in v.values() if isinstance(w, dict)]  # e.g. config.DataArguments
    for scope in scopes:
        for key in keys:
            if scope.get(key) not in (None, ""):
                return scope[key]
    return None


CONFIG_KEYS = (
    "method",
    "conv_template",
    "lora_r",
    "lora_alpha",
    "targets",
    "filter",
    "gate",
    "coordinator",
    "graph",
    "gnn_layers",
    "lambda_ib",
    "tune_mm_projector",
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "warmup_steps",
    "lr_scheduler_type",
    "weight_decay",
    "data_fraction",
    "seed",
    "world_size",
    "deepspeed",
    "global_step",
    "final_loss",
)


def config_table(run: dict[str, Any]) -> list[str]:
    """The fields a reader needs to reproduce the run, wherever run.json keeps them."""
    rows = [(k, _run_field(run, k)) for k in CONFIG_KEYS]
    git = run.get("git") or {}
    rows.append(("git commit", f"{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}" if git else None))
    lines = ["| field | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows if v is not None]
    return lines


def prompt_section(conv_template: str, processor_in_folder: bool) -> list[str]:
    """The prompt the adapter was trained with, and how a stock client gets it."""
    from llava_structlora.data.conversation import build_prompt, conv_system

    prompt = build_prompt("{question}", conv_system(conv_template)).replace("\n", "\\n")
    how = (
        "This folder's processor carries it as its default chat template (`processor.apply_chat_template(messages, "
        'add_generation_prompt=True)`); `chat_template="vicuna_v1"` / `"vicuna_v1_nosys"` name the others.'
        if processor_in_folder
        else "Give the processor the matching chat template: `llava_structlora.data.attach_chat_templates(processor, "
        f'"{conv_template}")`.'
    )
    return [f"Prompt format (conversation format `{conv_template}`, LLaVA-1.5 vicuna_v1 roles): `{prompt}`.", "", how]


@dataclass
class CardInputs:
    """What a model card is rendered from: the run's own records, read once by release.py."""

    base: str  # base_model_name_or_path of the release (a hub id, or the local base path)
    run: dict[str, Any]
    adapter_cfg: dict[str, Any]
    adapter_modules: list[str]  # modules the adapter's weights change (v5 names)
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json (the adapter)
    base_metrics: dict[str, Any] = field(default_factory=dict)  # metrics_base.json (the untuned base)
    export_info: dict[str, Any] = field(default_factory=dict)  # adapter/structlora_export.json
    moved: dict[str, Any] = field(default_factory=dict)  # moved.json (StructLoRA's what-moved record)
    export_note: str = ""
    license_id: str = "apache-2.0"
    repo_id: str | None = None
    local_base: str | None = None
    conv_template: str = "vicuna_v1_nosys"
    processor_in_folder: bool = False


def how_to_load(c: CardInputs, task: str | None) -> list[str]:
    """The runnable snippet: install line, load, merge, prompt with the chat template, generate."""
    hub = is_hub_id(c.base)
    base = c.base if hub else BASE_PLACEHOLDER
    adapter = c.repo_id or ADAPTER_PLACEHOLDER
    note = "" if hub else f"  # the local base it was trained on ({public(c.local_base or c.base)}), not on the Hub"
    code = LOAD_SNIPPET.format(
        packages=" ".join(f'"{p}"' if "=" in p else p for p in snippet_packages()),
        base=base,
        base_note=note,
        adapter=adapter,
        processor=adapter if c.processor_in_folder else base,
        question=QUESTIONS.get(task or "", "Describe the image."),
        image=IMAGE_PLACEHOLDER,
    )
    return [code, "", *prompt_section(c.conv_template, c.processor_in_folder)]


def render_model_card(c: CardInputs) -> str:
    run = c.run
    method = _run_field(run, "method") or "unknown"
    task = _run_field(run, "task")
    data = public(_run_field(run, "data_path", "data_root"))
    base_name = f"`{c.base}`" if is_hub_id(c.base) else f"the local base `{public(c.base)}`"
    ranks = sorted(set((c.adapter_cfg.get("rank_pattern") or {}).values()) | {c.adapter_cfg.get("r")} - {None})
    front = ["---", "library_name: peft"] + ([f"base_model: {c.base}"] if is_hub_id(c.base) else [])
    front += [f"license: {c.license_id}", "pipeline_tag: image-text-to-text", "tags:", "- llava", "- lora"]
    front += [f"- {method}", "---", ""]
    body = [f"# {method} adapter for {base_name}" + (f" ({task})" if task else ""), "", "## Method", ""]
    body += [METHOD_TEXT.get(method, f"Method `{method}`."), "", "## How to load (stock PEFT, no project code)", ""]
    body += how_to_load(c, task)
    body += ["", "## What the adapter changes", ""]
    body += coverage_section(c.adapter_modules, c.export_info, c.moved)
    body += [
        "",
        f"- target modules: {_targets(c.adapter_cfg.get('target_modules'))}",
        f"- rank(s): {ranks} (rank_pattern entries: {len(c.adapter_cfg.get('rank_pattern') or {})}), "
        f"lora_alpha: {c.adapter_cfg.get('lora_alpha')}, peft_type: {c.adapter_cfg.get('peft_type')}",
    ]
    if c.export_note.strip():
        body += ["", "<details><summary>export notes</summary>", "", c.export_note.strip(), "", "</details>"]
    body += [""] + compatibility_section()
    body += ["## Training configuration", "", "Summary of `run.json` (the full record is in this folder):", ""]
    body += config_table(run)
    body += ["", "## Data", "", f"Task: `{task or 'not recorded'}`; training data: `{data or 'not recorded'}`."]
    body += [
        "Shapes-world runs use the repository's synthetic offline data (official COCO/VQAv2/GQA formats); "
        "their scores say nothing about real-image quality.",
        "",
        "## Evaluation",
        "",
    ]
    body += metrics_section(c.metrics, c.base_metrics, task)
    body += ["", "## Integrity", "", "`sha256sum -c SHA256SUMS` verifies every file of this folder.", ""]
    body += [
        "## License",
        "",
        f"Adapter weights: {c.license_id}. The base model keeps its own license "
        "(LLaVA-1.5 is built on Llama 2: Llama 2 Community License).",
        "",
    ]
    return "\n".join(front + body)


def render_push_doc(repo_id: str) -> str:
    """How to upload the release (not run here: this machine has no network)."""
    return f"""# Uploading this release to the Hugging Face Hub

Not run by `release_adapter.sh` (no network here). On a machine with access and a token
(`huggingface-cli login` or `HF_TOKEN`), from this folder:

```bash
sha256sum -c SHA256SUMS                       # the files are what the run produced
huggingface-cli upload {repo_id} . . --repo-type model
```

or in Python:

```python
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("{repo_id}", repo_type="model", exist_ok=True)
api.upload_folder(folder_path=".", repo_id="{repo_id}", repo_type="model")
```
"""
