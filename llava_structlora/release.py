"""Turn a training run into a release folder that anyone can load with stock PEFT.

    python -m llava_structlora.release RUN_DIR OUT_DIR [--base-id llava-hf/llava-1.5-7b-hf] [--push REPO_ID]

(``bash scripts/release_adapter.sh RUN_DIR OUT_DIR`` wraps this.) OUT_DIR gets

- ``adapter_config.json`` + ``adapter_model.safetensors``: the run's stock PEFT adapter, with
  ``base_model_name_or_path`` rewritten to the base users should load (the hub id for a real
  LLaVA-1.5 base, recognised from its architecture; the local base path for shapes-world runs),
  keyed so that it attaches to a transformers 4.57 and a 5.x base alike (portable.py),
- the base's processor files (when the base is at hand) with the chat templates of
  ``llava_structlora.data.chat_template``, default = the run's conversation format, so that
  ``AutoProcessor.from_pretrained(OUT_DIR).apply_chat_template(...)`` prompts as the run trained,
- ``README.md``: the model card (method, a runnable load-and-generate snippet with its pip line, what the
  adapter changes, config, data, adapter vs base scores with their protocol, license; model_card.py),
  ``run.json``, ``metrics.json`` and the records the card reads (``metrics_base.json``, ``moved.json``,
  ``structlora_export.json``) of the run,
- ``SHA256SUMS`` over every other file (``sha256sum -c SHA256SUMS`` checks it).

Nothing is uploaded: ``--push REPO_ID`` only prints (and records in PUSH.md) the exact
huggingface_hub commands to run on a machine with network access.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from llava_structlora.data.chat_template import attach_chat_templates
from llava_structlora.merge import (
    adapter_dir_of,
    config_field,
    load_config_dict,
    read_run,
    recorded_base,
)
from llava_structlora.model_card import CardInputs, render_model_card, render_push_doc
from llava_structlora.portable import (
    base_tokenizer_class,
    make_adapter_portable,
    make_image_processor_portable,
    make_tokenizer_portable,
)
from llava_structlora.rundir import RunDir
from llava_structlora.structlora.export import EXPORT_INFO
from llava_structlora.utils.errors import entry_point
from llava_structlora.utils.io import (
    OUTPUT_MARKER,
    OWNER_FILE,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
    read_optional_json,
    sha256_file,
)
from llava_structlora.utils.jsonio import read_json

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# Architecture signatures of the public llava-hf checkpoints (config.json values). model_type tells
# LLaVA-1.5 (llava) from LLaVA-NeXT (llava_next): the 7B/13B towers are the same sizes.
_CLIP_L336 = {"vision_config.hidden_size": 1024, "vision_config.num_hidden_layers": 24, "vision_config.image_size": 336}
_VICUNA_7B = {"text_config.model_type": "llama", "text_config.hidden_size": 4096, "text_config.num_hidden_layers": 32}
_VICUNA_13B = {"text_config.model_type": "llama", "text_config.hidden_size": 5120, "text_config.num_hidden_layers": 40}
KNOWN_BASES: dict[str, dict[str, Any]] = {
    "llava-hf/llava-1.5-7b-hf": {"model_type": "llava", **_VICUNA_7B, **_CLIP_L336},
    "llava-hf/llava-1.5-13b-hf": {"model_type": "llava", **_VICUNA_13B, **_CLIP_L336},
    "llava-hf/llava-v1.6-vicuna-7b-hf": {"model_type": "llava_next", **_VICUNA_7B, **_CLIP_L336},
    "llava-hf/llava-v1.6-vicuna-13b-hf": {"model_type": "llava_next", **_VICUNA_13B, **_CLIP_L336},
}


def hub_id_for(config: dict[str, Any]) -> str | None:
    """The public base whose architecture `config` has, if any."""
    for hub_id, sig in KNOWN_BASES.items():
        if all(config_field(config, k) == v for k, v in sig.items()):
            return hub_id
    return None


def resolve_base_id(run_dir: Path, override: str | None) -> tuple[str, str | None]:
    """(base id for adapter_config.json, local base dir the run used or None)."""
    local = recorded_base(run_dir)
    if override:
        return override, local
    if local and Path(local, "config.json").exists():
        hub = hub_id_for(load_config_dict(local))
        return (hub or str(Path(local).resolve())), local
    if local:
        return local, None
    raise ValueError(f"{run_dir}: no base recorded in run.json or adapter_config.json; pass --base-id")


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return RunDir(run_dir).read_metrics()


def write_checksums(folder: Path) -> Path:
    """SHA256SUMS in `sha256sum` format, over every file except itself and the publish stamp (sorted,
    relative paths): the stamp is written after it and lists it (utils.io.write_output_marker)."""
    skip = {"SHA256SUMS", OUTPUT_MARKER, OWNER_FILE}
    lines = [
        f"{sha256_file(p)}  {p.relative_to(folder).as_posix()}"
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    ]
    return atomic_write_text(folder / "SHA256SUMS", "\n".join(lines) + "\n")


def verify_checksums(folder: str | Path) -> list[str]:
    """Files whose hash differs from SHA256SUMS (empty = intact)."""
    folder = Path(folder)
    bad = []
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        path = folder / name
        if not path.exists() or sha256_file(path) != digest:
            bad.append(name)
    return bad


def write_processor(folder: Path, local_base: str | None, conv_template: str) -> bool:
    """Save the base's processor with our chat templates into `folder`; False when the base is not here.

    A base folder without processor files (e.g. a config-only stand-in for a 7B base) has nothing to copy.
    """
    names = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    if not local_base or not any(Path(local_base, n).is_file() for n in names):
        return False
    from transformers import AutoProcessor

    attach_chat_templates(AutoProcessor.from_pretrained(local_base), conv_template).save_pretrained(folder)
    make_tokenizer_portable(folder, base_tokenizer_class(local_base))  # transformers 4.57 reads it too
    make_image_processor_portable(folder)  # and resizes images as 5.x does
    return True


def adapter_modules(weights: Path) -> list[str]:
    """The modules a PEFT adapter file changes, in transformers-5 spelling (`model.vision_tower.encoder...`)."""
    from safetensors import safe_open

    from llava_structlora.portable import v5_key

    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
    names = {k.removeprefix("base_model.model.").split(".lora_")[0] for k in keys if ".lora_" in k}
    return sorted(v5_key(n) for n in names)


def copy_records(run_dir: Path, adapter: Path, folder: Path) -> dict[str, Any]:
    """Copy the records the card reads (the base's scores, the what-moved record, the export info) into
    `folder` under their run-layout names, so the card points at files the release has; their contents."""
    run, rel = RunDir(run_dir), RunDir(folder)
    records = {  # CardInputs field: (source, destination)
        "base_metrics": (run.metrics("base"), rel.metrics("base")),
        "moved": (run.moved, rel.moved),
        "export_info": (adapter / EXPORT_INFO, folder / EXPORT_INFO),
    }
    out: dict[str, Any] = {}
    for field_name, (src, dst) in records.items():
        data = read_optional_json(src)
        if data:
            atomic_write_json(dst, data)
            out[field_name] = data
    return out


RELEASE_KIND = "release"


class ReleaseVerificationError(ValueError):
    """The release folder would not load with stock PEFT: it is not published."""


def verify_loads_with_peft(folder: Path, base_config_dir: str | Path | None) -> int:
    """Load `folder` with stock ``PeftModel.from_pretrained`` over the base built on the meta device.

    The base's weights are never read (its config.json is enough, so this costs seconds at 7B too):
    PEFT parses adapter_config.json, finds the target modules, builds the LoRA layers and loads
    adapter_model.safetensors into them (``load_state_dict`` checks every shape; on the meta device it
    copies no values, which the safetensors header check has vouched for), and every tensor of the
    file must have a place in the model (strict_load.check_adapter_loaded). Returns the number of
    adapter tensors.
    """
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoConfig

    from llava_structlora.modeling import base_model_class
    from llava_structlora.utils.strict_load import check_adapter_loaded

    if base_config_dir is None or not Path(base_config_dir, "config.json").is_file():
        raise ReleaseVerificationError(
            f"cannot verify that the release {folder} loads: the run's base is not a local directory here; "
            "pass --base DIR (its config.json is enough)"
        )
    cfg = AutoConfig.from_pretrained(str(base_config_dir))
    with torch.device("meta"):
        model = base_model_class(cfg)(cfg)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")  # meta: by design
            peft_model = PeftModel.from_pretrained(model, str(folder))
        check_adapter_loaded(peft_model, folder)
    except Exception as e:  # noqa: BLE001 - whatever PEFT raises, the release is not published
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
        raise ReleaseVerificationError(
            f"refusing to publish a release that stock PEFT cannot load over the base {base_config_dir} "
            f"({type(e).__name__}: {' '.join(lines)[:600]})"
        ) from None
    return len(get_peft_model_state_dict(peft_model))


def build_release(
    run_dir: str | Path,
    out_dir: str | Path,
    base_id: str | None = None,
    license_id: str = "apache-2.0",
    repo_id: str | None = None,
    overwrite: bool = False,
    base: str | Path | None = None,
) -> Path:
    """Write the release folder atomically; returns its path.

    `out_dir` may not be the run, the base or a user's folder; a previous release only with `overwrite`.
    `out_dir` is locked while it is built and the run checked not to be training (utils.locks); the
    folder is loaded with stock PEFT before SHA256SUMS is written (`verify_loads_with_peft`; `base`:
    the base dir to verify against, default the run's) and published by one rename (utils.publish):
    an interrupted or refused release leaves nothing behind.
    """
    from llava_structlora.utils.errors import note_output
    from llava_structlora.utils.locks import check_not_in_use, output_lock

    note_output(out_dir, "release")
    with output_lock(out_dir, "release"):
        check_not_in_use(run_dir, "release (reads the run)")
        return _release_locked(Path(run_dir), Path(out_dir), base_id, license_id, repo_id, overwrite, base)


def _release_locked(
    run_dir: Path,
    out_dir: Path,
    base_id: str | None,
    license_id: str,
    repo_id: str | None,
    overwrite: bool,
    verify_base: str | Path | None,
) -> Path:
    from llava_structlora.utils.locks import check_not_in_use
    from llava_structlora.utils.publish import debug_point

    adapter = adapter_dir_of(run_dir)
    base, local_base = resolve_base_id(run_dir, base_id)
    protected = {"run dir": run_dir, "adapter dir": adapter, "base dir": local_base}
    check_output_dir(out_dir, RELEASE_KIND, overwrite, protected)
    run, metrics = read_run(run_dir), read_metrics(run_dir)
    adapter_cfg = read_json(adapter / "adapter_config.json", "adapter config")
    if not isinstance(adapter_cfg, dict):
        raise ValueError(f"adapter config {adapter / 'adapter_config.json'}: expected a JSON object")
    adapter_cfg["base_model_name_or_path"] = base
    export_note = (adapter / "README.md").read_text() if (adapter / "README.md").exists() else ""
    with atomic_directory(out_dir, kind=RELEASE_KIND, overwrite=overwrite, protected=protected, locked=True) as tmp:
        atomic_write_json(tmp / "adapter_config.json", adapter_cfg)
        shutil.copyfile(adapter / "adapter_model.safetensors", tmp / "adapter_model.safetensors")  # umask modes
        make_adapter_portable(tmp)  # v4 key names, targets that match v4 and v5 module names
        debug_point("release-adapter-written")
        adapter_cfg = json.loads((tmp / "adapter_config.json").read_text())
        if run:  # the release carries the run's records under their run-layout names (RunDir.holding finds them)
            atomic_write_json(RunDir(tmp).run_json, run)
        if metrics:
            atomic_write_json(RunDir(tmp).metrics(), metrics)
        conv_template = RunDir(run_dir).conv_template()
        has_processor = write_processor(tmp, local_base, conv_template)
        records = copy_records(run_dir, adapter, tmp)
        card = render_model_card(
            CardInputs(
                base=base,
                run=run,
                adapter_cfg=adapter_cfg,
                adapter_modules=adapter_modules(tmp / "adapter_model.safetensors"),
                metrics=metrics,
                license_id=license_id,
                repo_id=repo_id,
                export_note=export_note,
                local_base=local_base,
                conv_template=conv_template,
                processor_in_folder=has_processor,
                **records,
            )
        )
        (tmp / "README.md").write_text(card)
        if repo_id:
            (tmp / "PUSH.md").write_text(render_push_doc(repo_id))
        verify_loads_with_peft(tmp, verify_base or local_base)  # checksums only over a loadable adapter
        write_checksums(tmp)
        check_not_in_use(run_dir, "release (reads the run)")  # a training started meanwhile: publish nothing
    return out_dir


@entry_point("release")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="training output dir (adapter/, run.json, metrics.json)")
    ap.add_argument("out_dir", help="release folder to write")
    ap.add_argument(
        "--base-id",
        help="base_model_name_or_path to record (default: hub id recognised from the "
        "base's architecture, else the local base path)",
    )
    ap.add_argument("--license", default="apache-2.0", help="license of the adapter weights (model card)")
    ap.add_argument("--push", metavar="REPO_ID", help="document how to upload to REPO_ID (nothing is uploaded)")
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT_DIR when it holds a previous release (never any other folder)",
    )
    ap.add_argument(
        "--base",
        default=None,
        help="local base dir the release is verified against with stock PEFT (default: the run's; "
        "its config.json is enough)",
    )
    args = ap.parse_args(argv)
    out = build_release(
        args.run_dir, args.out_dir, args.base_id, args.license, args.push, args.overwrite, base=args.base
    )
    print(f"release written to {out} ({len((out / 'SHA256SUMS').read_text().splitlines())} files checksummed)")
    if args.push:
        print(render_push_doc(args.push))
    return 0


if __name__ == "__main__":
    sys.exit(main())
