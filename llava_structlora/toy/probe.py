"""Quality probe of a toy base: does it look at the image, and is there room downstream?

    python -m llava_structlora.toy.probe --base BASE_DIR --data DATA_ROOT [--n 500] [--out probe.json]

(a) ``pretrain`` val split (images never trained on): exact match against the VQAv2
``multiple_choice_answer`` per question ``category``, next to two image-blind references:
``chance`` = accuracy of always answering the most frequent answer of that category (computed on
the same split: an upper bound of any constant guess) and ``shuffled`` = the base's own accuracy
when every image is swapped with another question's image (a base that ignores the image scores
the same either way).
(b) downstream val splits: ``vqav2`` (exact match vs multiple_choice_answer), ``gqa`` (exact
match), ``coco`` (CIDEr-D from pycocoevalcap on lower-cased, punctuation-stripped tokens; no
PTBTokenizer/Java). Quick probes, not the official scorers (llava_structlora.metrics).
Greedy, batched, left-padded decoding; stock transformers classes only.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import torch

from llava_structlora.data import collate_for_generation, encode_prompt, load_image, resolve_image_folder


def normalize(ans: str) -> str:
    return re.sub(r"[^\w\s]", "", ans.lower()).strip()


def read_questions(task_dir: Path, n: int) -> list[dict]:
    with open(task_dir / "val_questions.jsonl") as f:
        return [json.loads(line) for line, _ in zip(f, range(n))]


def vqa_answers(task_dir: Path) -> dict:
    """question_id -> (multiple_choice_answer, answer_type) from VQAv2-format annotations."""
    anns = json.loads((task_dir / "val_annotations.json").read_text())["annotations"]
    return {a["question_id"]: (a["multiple_choice_answer"], a.get("answer_type", "")) for a in anns}


@torch.no_grad()
def generate(
    model,
    processor,
    questions: list[dict],
    image_folder: Path,
    batch_size: int = 64,
    max_new_tokens: int = 12,
    shuffle_images: bool = False,
) -> list[str]:
    """Greedy answers, in the order of ``questions``."""
    tok = processor.tokenizer
    pix = [load_image(str(image_folder / q["image"]), processor) for q in questions]
    if shuffle_images:
        perm = torch.randperm(len(pix), generator=torch.Generator().manual_seed(0)).tolist()
        pix = [pix[j] for j in perm]
    items = [
        {"input_ids": torch.tensor(encode_prompt(q["text"], processor)), "pixel_values": p, "id": q["question_id"]}
        for q, p in zip(questions, pix)
    ]
    outs = []
    for i in range(0, len(items), batch_size):
        b = collate_for_generation(items[i : i + batch_size], tok.pad_token_id)
        gen = model.generate(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            pixel_values=b["pixel_values"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        outs += tok.batch_decode(gen[:, b["input_ids"].shape[1] :], skip_special_tokens=True)
    return [o.strip() for o in outs]


def grouped_accuracy(groups: list[str], preds: list[str], refs: list[str]) -> dict[str, float]:
    acc: dict[str, list[float]] = defaultdict(list)
    for g, p, r in zip(groups, preds, refs):
        acc[g].append(float(normalize(p) == normalize(r)))
        acc["overall"].append(float(normalize(p) == normalize(r)))
    return {g: round(sum(v) / len(v), 4) for g, v in sorted(acc.items())}


def majority_chance(groups: list[str], refs: list[str]) -> dict[str, float]:
    by: dict[str, Counter] = defaultdict(Counter)
    for g, r in zip(groups, refs):
        by[g][normalize(r)] += 1
        by["overall"][normalize(r)] += 1
    return {g: round(c.most_common(1)[0][1] / sum(c.values()), 4) for g, c in sorted(by.items())}


def probe_pretrain(model, processor, data_root: Path, n: int) -> dict:
    d = data_root / "pretrain"
    qs = read_questions(d, n)
    ans = vqa_answers(d)
    groups = [q.get("category") or ans[q["question_id"]][1] for q in qs]
    refs = [ans[q["question_id"]][0] for q in qs]
    folder = resolve_image_folder(d / "llava_train.json")
    preds = generate(model, processor, qs, folder)
    shuf = generate(model, processor, qs, folder, shuffle_images=True)
    return {
        "n": len(qs),
        "accuracy": grouped_accuracy(groups, preds, refs),
        "shuffled": grouped_accuracy(groups, shuf, refs),
        "chance": majority_chance(groups, refs),
        "examples": [[q["text"].split("\n")[0], r, p] for q, r, p in list(zip(qs, refs, preds))[:6]],
    }


def probe_vqa(model, processor, data_root: Path, task: str, n: int) -> dict:
    d = data_root / task
    qs = read_questions(d, n)
    if task == "gqa":
        full = json.loads((d / "val_questions.json").read_text())
        refs = [full[str(q["question_id"])]["answer"] for q in qs]
        groups = [full[str(q["question_id"])]["types"]["structural"] for q in qs]
    else:
        ans = vqa_answers(d)
        refs = [ans[q["question_id"]][0] for q in qs]
        groups = [ans[q["question_id"]][1] for q in qs]
    preds = generate(model, processor, qs, resolve_image_folder(d / "llava_train.json"))
    return {
        "n": len(qs),
        "exact_match": grouped_accuracy(groups, preds, refs),
        "chance": majority_chance(groups, refs),
        "examples": [[q["text"].split("\n")[0], r, p] for q, r, p in list(zip(qs, refs, preds))[:4]],
    }


def probe_coco(model, processor, data_root: Path, n: int) -> dict:
    from pycocoevalcap.cider.cider import Cider

    d = data_root / "coco"
    qs = read_questions(d, n)
    refs: dict[int, list[str]] = defaultdict(list)
    for a in json.loads((d / "val_annotations.json").read_text())["annotations"]:
        refs[a["image_id"]].append(normalize(a["caption"]))
    preds = generate(model, processor, qs, resolve_image_folder(d / "llava_train.json"), max_new_tokens=32)
    res = {q["question_id"]: [normalize(p) or "empty"] for q, p in zip(qs, preds)}
    gts = {q["question_id"]: refs[q["question_id"]] for q in qs}
    cider, _ = Cider().compute_score(gts, res)
    return {
        "n": len(qs),
        "cider": round(float(cider), 4),
        "examples": [[gts[q["question_id"]][0], p] for q, p in list(zip(qs, preds))[:4]],
    }


def probe(base: str | Path, data_root: str | Path, n: int = 500) -> dict:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from llava_structlora.utils.strict_load import from_pretrained_strict

    data_root = Path(data_root)
    model = from_pretrained_strict(LlavaForConditionalGeneration, base).eval()
    processor = AutoProcessor.from_pretrained(base)
    report = {"pretrain": probe_pretrain(model, processor, data_root, n)}
    for task in ("vqav2", "gqa"):
        if (data_root / task / "val_questions.jsonl").exists():
            report[task] = probe_vqa(model, processor, data_root, task, n)
    if (data_root / "coco" / "val_questions.jsonl").exists():
        report["coco"] = probe_coco(model, processor, data_root, n)
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=500, help="questions per split (first n)")
    ap.add_argument("--out", help="also write the report JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    text = json.dumps(probe(args.base, args.data, args.n), indent=1)
    print(text)
    if args.out:
        from llava_structlora.utils.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
