"""A valid safetensors file whose header length starts with the bytes of a pickle's protocol opcode."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from llava_structlora.utils.artifacts import safetensors_header


def test_header_length_that_looks_like_pickle_magic_is_still_safetensors(tmp_path):
    """Header length 0x0280 = 640 serialises as b"\\x80\\x02...": the check must read the JSON, not refuse it
    (a StructLoRA r=2 export of the quick study hit exactly this)."""
    for pad in range(400, 700):
        path = tmp_path / "w.safetensors"
        save_file({"w": torch.zeros(1)}, str(path), metadata={"m": "x" * pad})
        head = path.read_bytes()[:2]
        if head == b"\x80\x02":
            assert "w" in safetensors_header(path)
            return
    raise AssertionError("no padding gave a 640-byte header")
