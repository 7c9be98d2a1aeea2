"""docs/structlora.md's knob table is generated from StructLoRAConfig's field metadata, and stays so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from llava_structlora.structlora.config import StructLoRAConfig, knob_table
from recipes.docs import main, render

ROOT = Path(__file__).resolve().parents[2]


def test_doc_table_is_the_generated_one():
    assert main(["--check"]) == 0, "docs/structlora.md's knob table differs: run python -m recipes.docs"


def test_table_has_one_row_per_field_with_its_default():
    table = knob_table()
    for f in dataclasses.fields(StructLoRAConfig):
        assert f"| `{f.name}` |" in table, f.name
    assert table.count("\n") == len(dataclasses.fields(StructLoRAConfig)) + 2
    assert "| `gate_lr_mult` | 300.0 |" in table and "| `lambda_ib` | 0.001 |" in table


def test_check_fails_when_the_doc_differs(tmp_path):
    doc = (ROOT / "docs" / "structlora.md").read_text()
    stale = tmp_path / "structlora.md"
    stale.write_text(render(doc, knob_table().replace("| 300.0 |", "| 200.0 |")))  # a hand-edited default
    assert main(["--check", "--doc", str(stale)]) == 1
    assert main(["--doc", str(stale)]) == 0 and stale.read_text() == doc  # regenerated
