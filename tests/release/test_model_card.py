"""Model card sections read from the run's records: what the adapter changes, base vs adapter scores, paths."""

from __future__ import annotations

from llava_structlora.model_card import CardInputs, coverage_section, metrics_section, public, render_model_card

VIS = [f"model.vision_tower.encoder.layers.0.self_attn.{p}_proj" for p in "qv"]
LM = [f"model.language_model.layers.{i}.self_attn.{p}_proj" for i in (0, 1) for p in "qv"]


def moved(open_final: dict[str, int]) -> dict:
    return {"open_directions": {"init": {m: 8 for m in VIS + LM}, "final": open_final}}


def test_coverage_says_plainly_when_the_gates_closed_the_vision_tower():
    """The default COCO run's records: every vision direction closed, the export dropped both vision modules."""
    rec = moved({**{m: 0 for m in VIS}, **{m: 8 for m in LM}})
    lines = coverage_section(LM, {"empty_modules": VIS}, rec)
    text = "\n".join(lines)
    assert "| vision tower | 2 | 0 | 0 of 16 |" in text and "| language model | 4 | 4 | 32 of 32 |" in text
    assert "**This adapter does not change the vision tower**: its gates closed every rank direction" in text
    assert "language model**" not in text
    both = "\n".join(coverage_section(VIS + LM, {}, moved({m: 3 for m in VIS + LM})))
    assert "does not change" not in both and "| vision tower | 2 | 2 | 6 of 16 |" in both
    lora = "\n".join(coverage_section(LM, {}, {}))  # a PEFT baseline: no what-moved record
    assert "| language model | 4 | 4 | n/a |" in lora and "vision" not in lora


def test_scores_sit_next_to_the_base_with_the_gain_only_on_the_same_questions():
    adapter = {"CIDEr": 3.7419, "Bleu_4": 0.5, "n": 250, "split": "val", "protocol": "official", "total_s": 9.0}
    base = {"CIDEr": 3.1226, "Bleu_4": 0.4, "n": 250, "split": "val", "protocol": "official"}
    text = "\n".join(metrics_section(adapter, base, "coco"))
    assert "| CIDEr | 3.742 | 3.123 | +0.6193 |" in text and "total_s" not in text
    other = "\n".join(metrics_section(adapter, {**base, "n": 10}, "coco"))
    assert "| CIDEr | 3.742 | not recorded |  |" in other and "not recorded on the same questions" in other


def test_card_has_no_local_path_and_a_hub_base_keeps_its_id():
    assert public("/work/x/artifacts/base/default") == "base/default" and public("llava-hf/x") == "llava-hf/x"
    run = {
        "method": "structlora",
        "config": {"DataArguments": {"task": "coco", "data_path": "/data/llava/coco/t.json"}},
    }
    common = dict(run=run, adapter_cfg={"r": 8}, adapter_modules=LM)
    local = render_model_card(CardInputs(base="/home/u/artifacts/base/default", **common))
    assert "/home/u" not in local and "base_model:" not in local and '"path/to/base"' in local
    assert "training data: `coco/t.json`" in local
    hub = render_model_card(CardInputs(base="llava-hf/llava-1.5-7b-hf", repo_id="me/coco", **common))
    assert "base_model: llava-hf/llava-1.5-7b-hf" in hub and 'from_pretrained(base, "me/coco")' in hub
    assert 'AutoModelForImageTextToText.from_pretrained("llava-hf/llava-1.5-7b-hf"' in hub
