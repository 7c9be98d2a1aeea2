"""Official COCO caption files (+ optional Karpathy split) -> LLaVA training JSON and CIDEr files.

    python -m data_prep.coco \
        --captions DATA_ROOT/raw/coco/annotations/captions_train2014.json \
                   DATA_ROOT/raw/coco/annotations/captions_val2014.json \
        --karpathy DATA_ROOT/raw/coco/dataset_coco.json \
        --images DATA_ROOT/raw/images --out DATA_ROOT/coco [--per caption|image]

Splits. With `--karpathy` (the `dataset_coco.json` of Karpathy & Fei-Fei, `images[]` with
`cocoid` and `split` in train/restval/val/test) an image's split is its Karpathy split, with
restval merged into train; all three splits are written (possibly empty). Without it, the
split of every image is the one in its captions file name (`captions_train2014.json` ->
train, `captions_val2014.json` -> val). Captions always come from the official files.

Images: `file_name` of the official `images[]`; `--images` may hold the files or be the parent
of `train2014/`, `val2014/` (a `COCO_<subtype>_...` name is then looked up in `<subtype>/`).

Outputs in `--out` (`image` paths are relative to `image_folder` of the manifest):
- `llava_train.json`: `--per caption` (default) one record per caption, id = str(annotation
  id); `--per image` one record per image with its first caption (lowest annotation id), id =
  str(image id). Human turn "<image>\\nProvide a one-sentence caption for the provided image.".
- `<split>_questions.jsonl` for val and test: one line per image, `{"question_id": image id,
  "image", "text": "Provide a one-sentence caption for the provided image."}`.
- `<split>_annotations.json` for val and test: COCO captions format (`info`, `licenses`,
  `type`, `images`, `annotations`) restricted to the kept images of that split -- the
  references pycocoevalcap's CIDEr reads.
- `manifest.json`, `image_folder.txt` (see data_prep.common.write_manifest).

`--fraction`/`--limit` sample IMAGES of the train split (all captions of a kept image go
together); `--eval-limit` samples images of each eval split. Memory holds per-image ids, paths
and caption counts, never the captions themselves (they are streamed twice).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

from data_prep.common import (
    CAPTION_PROMPT,
    ImageChecker,
    Sampling,
    SkipLog,
    add_common_args,
    atomic_open,
    check_task_dir,
    common_kwargs,
    eval_question,
    llava_record,
    portable_path,
    run_cli,
    staged_task_dir,
    write_manifest,
)
from data_prep.jsonstream import (
    ConvertError,
    JsonStreamWriter,
    field,
    iter_json,
    jsonl_line,
    read_header,
    require_array,
)

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
_FILE_SPLIT = re.compile(r"(train|val|test)")
_SUBTYPE = re.compile(r"^COCO_([a-z]+\d{4})_")


@dataclass
class Index:
    """What the first streaming pass learns; small (ints and paths), never the captions."""

    images: dict[int, tuple[str, str]] = dc_field(default_factory=dict)  # id -> (split, rel)
    order: dict[str, list[int]] = dc_field(default_factory=dict)
    dropped: set[int] = dc_field(default_factory=set)
    n_captions: Counter = dc_field(default_factory=Counter)
    first_caption: dict[int, int] = dc_field(default_factory=dict)


def read_karpathy(path: Path) -> dict[int, str]:
    """cocoid -> split (restval folded into train)."""
    splits: dict[int, str] = {}
    for i, img in enumerate(iter_json(path, "images.item")):
        cid = field(img, "cocoid", path, f"image #{i}", (int,))
        raw = field(img, "split", path, f"image #{i} (cocoid={cid})")
        if raw not in KARPATHY_SPLITS:
            raise ConvertError(f"{path}: image #{i} (cocoid={cid}): unknown split {raw!r}")
        if cid in splits:
            raise ConvertError(f"{path}: image #{i}: duplicated cocoid {cid}")
        splits[cid] = KARPATHY_SPLITS[raw]
    if not splits:
        require_array(path, "images")
    return splits


def _file_split(path: Path) -> str:
    m = _FILE_SPLIT.search(path.name)
    if m is None:
        raise ConvertError(
            f"{path}: cannot tell train/val from the file name; "
            f"rename it (captions_<split>2014.json) or pass --karpathy"
        )
    return m.group(1)


def _scan_images(
    paths: list[Path], karpathy: dict[int, str] | None, checker: ImageChecker, log: SkipLog, idx: Index
) -> None:
    for path in paths:
        fsplit = None if karpathy is not None else _file_split(path)
        n = 0
        for i, img in enumerate(iter_json(path, "images.item")):
            n += 1
            iid = field(img, "id", path, f"image #{i}", (int,))
            name = field(img, "file_name", path, f"image #{i} (id={iid})")
            if iid in idx.images or iid in idx.dropped:
                raise ConvertError(f"{path}: image #{i}: duplicated image id {iid}")
            split = fsplit if karpathy is None else karpathy.get(iid)
            m = _SUBTYPE.match(name)
            rel = checker.in_subdir(m.group(1), name) if m else name
            where = f"{path}: image id={iid}"
            if split is None:
                log.skip("train", "not_in_karpathy_split", where)
                idx.dropped.add(iid)
            elif problem := checker.problem(rel):
                log.skip(split, problem, f"{where}: {checker.root / rel}")
                idx.dropped.add(iid)
            else:
                idx.images[iid] = (split, rel)
                idx.order.setdefault(split, []).append(iid)
        if n == 0:
            require_array(path, "images")


def _scan_captions(paths: list[Path], log: SkipLog, idx: Index) -> None:
    seen: set[int] = set()
    for path in paths:
        n_before = len(seen)
        for i, ann in enumerate(iter_json(path, "annotations.item")):
            aid = field(ann, "id", path, f"annotation #{i}", (int,))
            iid = field(ann, "image_id", path, f"annotation #{i} (id={aid})", (int,))
            text = field(ann, "caption", path, f"annotation #{i} (id={aid})")
            if aid in seen:
                raise ConvertError(f"{path}: annotation #{i}: duplicated annotation id {aid}")
            seen.add(aid)
            if iid in idx.dropped:
                continue  # its image is already a counted skip
            if iid not in idx.images:
                raise ConvertError(
                    f"{path}: annotation id={aid}: image_id {iid} is not in 'images' of any captions file"
                )
            if not text.strip():
                log.skip(idx.images[iid][0], "empty_caption", f"{path}: annotation id={aid}")
                continue
            idx.n_captions[iid] += 1
            idx.first_caption[iid] = min(aid, idx.first_caption.get(iid, aid))
        if len(seen) == n_before:
            require_array(path, "annotations")


def _write_train(paths: list[Path], keep: set[int], per: str, idx: Index, out: Path) -> int:
    with atomic_open(out / "llava_train.json") as f:
        w = JsonStreamWriter(f)
        for path in paths:
            for ann in iter_json(path, "annotations.item"):
                iid, aid, text = ann["image_id"], ann["id"], ann["caption"].strip()
                if iid not in keep or not text:
                    continue
                if per == "image" and aid != idx.first_caption[iid]:
                    continue
                rec_id = str(aid) if per == "caption" else str(iid)
                w.add(llava_record(rec_id, idx.images[iid][1], CAPTION_PROMPT, text))
        w.close()
        return w.n


def _write_eval(paths: list[Path], keep: dict[str, set[int]], idx: Index, out: Path) -> Counter:
    """`<split>_questions.jsonl` and COCO-format `<split>_annotations.json` per eval split."""
    head = {**read_header(paths[0], ["info", "licenses"]), "type": "captions"}
    n_refs: Counter = Counter()
    with ExitStack() as stack:
        ann = {}
        for split, ids in keep.items():
            with atomic_open(out / f"{split}_questions.jsonl") as fq:
                for iid in idx.order.get(split, []):
                    if iid in ids:
                        fq.write(jsonl_line(eval_question(iid, idx.images[iid][1], CAPTION_PROMPT)))
            fa = stack.enter_context(atomic_open(out / f"{split}_annotations.json"))
            ann[split] = JsonStreamWriter(fa, head=head, key="images")
        for path in paths:
            for img in iter_json(path, "images.item"):
                split = idx.images.get(img["id"], ("", ""))[0]
                if split in ann and img["id"] in keep[split]:
                    ann[split].add(img)
        for w in ann.values():
            w.switch("annotations")
        for path in paths:
            for a in iter_json(path, "annotations.item"):
                split = idx.images.get(a["image_id"], ("", ""))[0]
                if split in ann and a["image_id"] in keep[split] and a["caption"].strip():
                    ann[split].add(a)
                    n_refs[split] += 1
        for w in ann.values():
            w.close()
    return n_refs


def convert_coco(
    captions: list,
    *,
    images: str,
    out: str,
    karpathy: str | None = None,
    per: str = "caption",
    limit: int | None = None,
    fraction: float | None = None,
    eval_limit: int | None = None,
    seed: int = 0,
    check_images: str = "exists",
    strict: bool = False,
) -> dict:
    """Convert official COCO caption files; returns the written manifest."""
    if per not in ("caption", "image"):
        raise ConvertError(f"--per must be 'caption' or 'image', got {per!r}")
    sampling = Sampling(limit, fraction, eval_limit, seed, check_images, strict)
    paths, out_dir = [Path(c) for c in captions], Path(out)
    check_task_dir(out_dir, "coco", images)  # never replace another task's output
    checker, log, idx = ImageChecker(images, check_images), SkipLog(strict), Index()
    kp = read_karpathy(Path(karpathy)) if karpathy else None
    _scan_images(paths, kp, checker, log, idx)
    _scan_captions(paths, log, idx)
    split_names = ["train", "val", "test"] if kp is not None else sorted(idx.order)
    if kp is not None:
        for cid in sorted(set(kp) - idx.images.keys() - idx.dropped):
            log.skip(kp[cid], "karpathy_image_not_in_captions", f"{karpathy}: cocoid={cid}")
    keep: dict[str, set[int]] = {}
    for split in split_names:
        cands = []
        for iid in idx.order.get(split, []):
            if idx.n_captions[iid]:
                cands.append(iid)
            else:
                log.skip(split, "no_captions", f"image id={iid}")
        keep[split] = sampling.keep(cands, split == "train")
    counts = {s: len(keep[s]) for s in split_names}
    with staged_task_dir(out_dir, "coco", images) as stage:  # published whole when the manifest is written
        return _write_all(paths, keep, split_names, counts, per, idx, sampling, log, karpathy, images, out_dir, stage)


def _write_all(paths, keep, split_names, counts, per, idx, sampling, log, karpathy, images, out_dir, stage) -> dict:
    """Write every output file into `stage`; the manifest last (paths relative to the final `out_dir`)."""
    files: dict[str, list[str]] = {}
    if "train" in keep:
        counts["train"] = _write_train(paths, keep["train"], per, idx, stage)
        files["train"] = ["llava_train.json"]
    evals = {s: keep[s] for s in split_names if s != "train"}
    n_refs = _write_eval(paths, evals, idx, stage)
    for s in evals:
        files[s] = [f"{s}_questions.jsonl", f"{s}_annotations.json"]
    sources = {
        "captions": [portable_path(p, out_dir) for p in paths],
        "karpathy": portable_path(karpathy, out_dir) if karpathy else None,
    }
    splits = {}
    for s in split_names:
        is_train = s == "train"
        splits[s] = {
            "count": counts[s],
            "images": len(keep[s]),
            **log.summary(s),
            "unit": f"{per} record" if is_train else "image",
            "references": n_refs[s] if not is_train else None,
            "files": files.get(s, []),
            "sources": sources,
            "options": {"per": per, **sampling.options(is_train)},
        }
    return write_manifest(stage, "coco", portable_path(images, out_dir), splits)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.coco", description=__doc__.split("\n")[0])
    p.add_argument("--captions", nargs="+", required=True, help="official captions_*.json files")
    p.add_argument("--karpathy", default=None, help="Karpathy split file dataset_coco.json")
    p.add_argument(
        "--per",
        choices=("caption", "image"),
        default="caption",
        help="training records: one per caption (default) or per image",
    )
    add_common_args(p)
    args = p.parse_args(argv)
    return run_cli(
        convert_coco, {"captions": args.captions, "karpathy": args.karpathy, "per": args.per, **common_kwargs(args)}
    )


if __name__ == "__main__":
    raise SystemExit(main())
