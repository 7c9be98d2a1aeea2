"""Lazy supervised dataset over LLaVA instruction JSON.

The JSON is streamed once with ijson to index and validate the records (text only, no images);
images are opened, padded (expand2square, processor mean colour) and preprocessed only in
``__getitem__``.

Bad records (documented policy):
- schema problems found while indexing (``schema.check_record``: field types, roles, answers
  that are not non-empty strings, ``<image>`` anywhere but once in the first human turn, an
  image path leaving the image folder, no gpt turn...): counted in ``self.skipped`` by
  category, logged with the record id, index and reason, and left out of the index;
  ``strict=True`` raises ``BadRecordError`` naming file and id instead.
- an image that is missing, cannot be decoded or trips PIL's decompression-bomb guard is only
  seen on access: the sample is counted (``self.skipped["bad image"]``), logged with id and
  path, and the next record is returned; ``strict=True`` raises. More than
  ``max_consecutive_bad`` bad samples in a row raise anyway.
- sequences longer than ``model_max_length`` are cut at the end (never inside the image
  tokens) and counted in ``self.truncated`` with a warning; a sample whose answer is cut away
  entirely (no target token left: its loss would be 0/0 = NaN) is a counted skip
  (``self.skipped["no target tokens"]``).
- the JSON itself: a UTF-8 BOM is accepted, UTF-16 and absurd nesting are refused naming the file.
Counters live in the process that touched the sample (DataLoader workers have their own).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from llava_structlora.utils.jsonio import JsonInputError, open_json_stream

from .conversation import IGNORE_INDEX, conversation_segments
from .encoding import encode_segments, is_anyres, load_image_and_size, truncate
from .schema import check_record

logger = logging.getLogger(__name__)


class BadRecordError(ValueError):
    """A record that cannot be used (named by file and record id)."""


# Decoder failures of a bad image file (PIL raises DecompressionBombError past its pixel guard).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def resolve_image_folder(json_path: str | Path, image_folder: str | Path | None = None) -> Path:
    """``image_folder`` if given, else the task dir's manifest.json ``image_folder``, else the JSON's dir."""
    json_path = Path(json_path)
    if image_folder is not None:
        return Path(image_folder)
    manifest = json_path.parent / "manifest.json"
    if manifest.exists():
        folder = json.loads(manifest.read_text()).get("image_folder")
        if folder is not None:
            folder = Path(folder)
            return folder if folder.is_absolute() else (json_path.parent / folder)
    return json_path.parent


def _iter_records(path: Path):
    import ijson

    try:
        with open_json_stream(path) as f:
            try:
                yield from ijson.items(f, "item")
            except ijson.JSONError as e:
                raise BadRecordError(f"{path}: malformed JSON near byte {f.offset} ({e})") from e
    except JsonInputError as e:
        raise BadRecordError(str(e)) from None


class LazySupervisedDataset(Dataset):
    """Items: ``{"input_ids", "labels", "pixel_values" (or None for text-only), "id"}``.

    With a LLaVA-NeXT (anyres) processor items also carry ``image_sizes`` (a ``[height, width]``
    tensor, None for text-only) and ``pixel_values`` is ``(patches, 3, H, W)``.
    """

    def __init__(
        self,
        json_path: str | Path,
        processor,
        image_folder: str | Path | None = None,
        model_max_length: int | None = None,
        system: str = "",
        strict: bool = False,
        limit: int | None = None,
        max_consecutive_bad: int = 16,
    ):
        self.json_path = Path(json_path)
        self.processor = processor
        self.image_folder = resolve_image_folder(self.json_path, image_folder)
        self.max_len = model_max_length or processor.tokenizer.model_max_length
        self.system, self.strict, self.max_bad = system, strict, max_consecutive_bad
        self.image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
        self.skipped: Counter = Counter()
        self.truncated = 0
        self.records: list[dict[str, Any]] = []
        for n, rec in enumerate(_iter_records(self.json_path)):
            if limit is not None and len(self.records) >= limit:
                break
            self._index(rec, n)
        if not self.records:
            raise BadRecordError(f"{self.json_path}: no usable records (skipped: {dict(self.skipped)})")

    def _index(self, rec: Any, n: int) -> None:
        rid = rec.get("id", f"#{n}") if isinstance(rec, dict) else f"#{n}"
        problem = check_record(rec)
        if problem is not None:
            category, detail = problem
            self._bad(category, f"{self.json_path} record {rid} (index {n}): {detail}")
            return
        self.records.append({"id": str(rid), "image": rec.get("image"), "conversations": rec["conversations"]})

    def _bad(self, reason: str, msg: str) -> None:
        if self.strict:
            raise BadRecordError(msg)
        self.skipped[reason] += 1
        logger.warning("skipping %s", msg)

    def __len__(self) -> int:
        return len(self.records)

    def encode(self, rec: dict[str, Any], image_size: tuple[int, int] | None = None) -> tuple[list[int], list[int]]:
        """``image_size``: (height, width) of the record's image; anyres (NeXT) token counts need it."""
        segments = conversation_segments(rec["conversations"], self.system, with_image=rec["image"] is not None)
        ids, labels = encode_segments(segments, self.processor, image_size)
        ids, labels, cut = truncate(ids, labels, self.max_len, self.image_token_id)
        if cut:
            self.truncated += 1
            logger.warning(
                "record %s truncated to model_max_length=%d (%d so far)", rec["id"], self.max_len, self.truncated
            )
        return ids, labels

    def __getitem__(self, i: int) -> dict[str, Any]:
        for attempt in range(self.max_bad + 1):
            rec = self.records[(i + attempt) % len(self.records)]
            pixel_values, size = None, None
            if rec["image"] is not None:
                path = self.image_folder / rec["image"]
                try:
                    pixel_values, size = load_image_and_size(str(path), self.processor)
                except IMAGE_ERRORS as e:
                    self._bad("bad image", f"{self.json_path} record {rec['id']}: image {path}: {e}")
                    continue
            ids, labels = self.encode(rec, size)
            if all(label == IGNORE_INDEX for label in labels):
                self._bad(
                    "no target tokens",
                    f"{self.json_path} record {rec['id']}: no answer token left after "
                    f"truncation to model_max_length={self.max_len}",
                )
                continue
            item = {
                "input_ids": torch.tensor(ids),
                "labels": torch.tensor(labels),
                "pixel_values": pixel_values,
                "id": rec["id"],
            }
            if is_anyres(self.processor):
                item["image_sizes"] = None if size is None else torch.tensor(size)
            return item
        raise BadRecordError(
            f"{self.json_path}: {self.max_bad + 1} bad images in a row (or samples without "
            f"target tokens) from index {i} (skipped so far: {dict(self.skipped)})"
        )
