"""Untrusted files and adapter dirs with a missing file (corpus kind 15).

Only safetensors or ``torch.load(weights_only=True)`` may read weights: a pickle payload planted
in an adapter or checkpoint dir must be refused *without running it*. The payload's side effect
(creating a marker file) proves whether it ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


class Payload:
    """Pickles to a call that creates ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def plant(path: Path, marker: Path) -> Path:
    torch.save({"base_model.model.lora_A.weight": Payload(marker)}, path)
    return path


def test_safe_torch_load_refuses_pickle_payload(tmp_path):
    from llava_structlora.utils.io import safe_torch_load

    marker = tmp_path / "pwned"
    path = plant(tmp_path / "optimizer.pt", marker)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        safe_torch_load(path)
    assert not marker.exists()
    # sanity: the payload is live (a plain unpickle would have run it)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_peft_adapter_with_pickle_weights_is_refused(tmp_path, tiny_base, peft_adapter):
    from llava_structlora.evaluation.load import load_model

    bad = tmp_path / "adapter"
    shutil.copytree(peft_adapter, bad)
    (bad / "adapter_model.safetensors").unlink()
    marker = tmp_path / "pwned"
    plant(bad / "adapter_model.bin", marker)
    with pytest.raises(ValueError, match="refusing to load a pickled adapter") as err:  # before PEFT sees it
        load_model(tiny_base, bad)
    assert str(bad / "adapter_model.bin") in str(err.value) and "can run code" in str(err.value)
    assert not marker.exists()


def test_structlora_dir_with_pickle_in_place_of_safetensors_is_refused(tmp_path, tiny_base):
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.evaluation.load import load_model
    from llava_structlora.structlora import StructLoRAConfig, apply_structlora, save_structlora

    model = apply_structlora(LlavaForConditionalGeneration.from_pretrained(tiny_base), StructLoRAConfig(r=4))
    sdir = save_structlora(model, tmp_path / "run" / "structlora")
    weights = [p for p in sdir.iterdir() if p.suffix == ".safetensors"]
    assert weights, f"no safetensors in {sdir}"
    marker = tmp_path / "pwned"
    plant(weights[0], marker)  # a pickle renamed to *.safetensors
    # refused by the recorded checksum or by the safetensors parser; neither ever unpickles
    with pytest.raises(Exception, match="deserializing header|sha256 differs"):
        load_model(tiny_base, sdir)
    assert not marker.exists()


def test_intact_adapter_loads(tiny_base, peft_adapter):
    """Control for the missing-file cases below: the untouched adapter loads and merges."""
    from llava_structlora.evaluation.load import load_model

    model, _ = load_model(tiny_base, peft_adapter)
    assert not any("lora" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("missing", ["adapter_model.safetensors", "adapter_config.json"])
def test_peft_adapter_dir_with_missing_file_is_clear_error(missing, tmp_path, tiny_base, peft_adapter):
    from llava_structlora.evaluation.load import load_model

    bad = tmp_path / "adapter"
    shutil.copytree(peft_adapter, bad)
    (bad / missing).unlink()
    with pytest.raises((ValueError, FileNotFoundError, OSError)) as err:
        load_model(tiny_base, bad)
    assert str(bad) in str(err.value) or bad.name in str(err.value)


def test_structlora_dir_with_missing_file_is_clear_error(tmp_path, tiny_base):
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.evaluation.load import load_model
    from llava_structlora.structlora import StructLoRAConfig, apply_structlora, save_structlora

    model = apply_structlora(LlavaForConditionalGeneration.from_pretrained(tiny_base), StructLoRAConfig(r=4))
    sdir = save_structlora(model, tmp_path / "run" / "structlora")
    for f in sdir.iterdir():
        if f.suffix == ".safetensors":
            f.unlink()
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_model(tiny_base, sdir)
    assert "missing" in str(err.value) and str(sdir) in str(err.value)
