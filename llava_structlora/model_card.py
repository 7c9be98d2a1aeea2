"""Model card (README.md) and upload instructions of a release folder (see release.py).

Everything in the card comes from the run's own files (run.json, metrics.json, the adapter
config): no number is typed by hand, and a missing file shows up as "not recorded".
"""

from __future__ import annotations

import json
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
LOAD_SNIPPET = """```python
from transformers import AutoModelForImageTextToText, AutoProcessor
from peft import PeftModel
base = AutoModelForImageTextToText.from_pretrained("{base}", dtype="auto")  # LLaVA-1.5 or LLaVA-NeXT
model = PeftModel.from_pretrained(base, "{adapter}").merge_and_unload()  # zero inference overhead
processor = AutoProcessor.from_pretrained("{processor}")
```"""


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
        f"Tested to load with identical logits under transformers {versions} (PEFT 0.21). The adapter's weight "
        "keys use the transformers-4 module names (`vision_tower.vision_model...`, which transformers 5 "
        "converts on load) and its `target_modules` match both spellings, so the vision-tower factors "
        "attach under either version.",
        "",
    ]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def metrics_section(metrics: dict[str, Any], task: str | None) -> list[str]:
    if not metrics:
        return ["Not recorded (the run was trained with `EVAL=0`). Evaluate with `bash eval/<task>.sh`."]
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in _flatten(metrics)]
    proto = PROTOCOL_TEXT.get(task or "")
    if proto:
        lines += ["", f"Protocol: {proto}"]
    return lines


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


def render_model_card(
    base: str,
    run: dict[str, Any],
    metrics: dict[str, Any],
    adapter_cfg: dict[str, Any],
    license_id: str,
    repo_id: str | None,
    export_note: str,
    local_base: str | None,
    conv_template: str = "vicuna_v1_nosys",
    processor_in_folder: bool = False,
) -> str:
    method = _run_field(run, "method") or "unknown"
    task = _run_field(run, "task")
    data = _run_field(run, "data_path", "data_root")
    adapter_ref = repo_id or "path/to/this/folder"
    ranks = sorted(set((adapter_cfg.get("rank_pattern") or {}).values()) | {adapter_cfg.get("r")} - {None})
    front = [
        "---",
        "library_name: peft",
        f"base_model: {base}",
        f"license: {license_id}",
        "pipeline_tag: image-text-to-text",
        "tags:",
        "- llava",
        "- lora",
        f"- {method}",
        "---",
        "",
    ]
    body = [
        f"# {method} adapter for `{base}`" + (f" ({task})" if task else ""),
        "",
        "## Method",
        "",
        METHOD_TEXT.get(method, f"Method `{method}`."),
        "",
        "## How to load (stock PEFT, no project code)",
        "",
        LOAD_SNIPPET.format(base=base, adapter=adapter_ref, processor=adapter_ref if processor_in_folder else base),
        "",
        *prompt_section(conv_template, processor_in_folder),
        "",
        "## Adapter",
        "",
        f"- target modules: {_targets(adapter_cfg.get('target_modules'))}",
        f"- rank(s): {ranks} (rank_pattern entries: {len(adapter_cfg.get('rank_pattern') or {})}), "
        f"lora_alpha: {adapter_cfg.get('lora_alpha')}, peft_type: {adapter_cfg.get('peft_type')}",
        f"- base_model_name_or_path: `{base}`"
        + (f" (trained from local `{local_base}`)" if local_base and local_base != base else ""),
    ]
    if export_note.strip():
        body += ["", "<details><summary>export notes</summary>", "", export_note.strip(), "", "</details>"]
    body += [""] + compatibility_section()
    body += ["## Training configuration", "", "Summary of `run.json` (the full record is in this folder):", ""]
    body += config_table(run)
    body += [
        "",
        "## Data",
        "",
        f"Task: `{task or 'not recorded'}`; training data: `{data or 'not recorded'}`.",
        "Shapes-world runs use the repository's synthetic offline data (official COCO/VQAv2/GQA formats); "
        "their scores say nothing about real-image quality.",
        "",
        "## Evaluation",
        "",
    ]
    body += metrics_section(metrics, task)
    body += [
        "",
        "## Integrity",
        "",
        "`sha256sum -c SHA256SUMS` verifies every file of this folder.",
        "",
        "## License",
        "",
        f"Adapter weights: {license_id}. The base model keeps its own license "
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
