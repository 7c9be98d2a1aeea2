"""Tokenizer of the toy base: sentencepiece BPE trained on shapes-world text, served as a
stock transformers ``LlamaTokenizer`` (tokenizers backend) so that ``save_pretrained`` /
``AutoTokenizer.from_pretrained`` round-trip without any project code.

Why these sentencepiece options: ``split_by_whitespace`` keeps pieces inside words, so the
tokenization of a whole prompt equals the concatenation of its space-separated segments
(the dataset masks labels per segment and generation sees the very same ids);
``add_dummy_prefix=False`` / ``add_prefix_space=False`` stop a spurious "▁" at segment
starts; ``byte_fallback`` maps any unseen character to bytes instead of ``<unk>``.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
TEMPLATE_WORDS = ("USER:", "ASSISTANT:", "USER", "ASSISTANT")


def iter_llava_text(json_paths: Iterable[str | Path]) -> Iterator[str]:
    """Yield every conversation turn of LLaVA JSON files (streamed with ijson)."""
    import ijson

    for path in json_paths:
        with open(path, "rb") as f:
            for rec in ijson.items(f, "item"):
                for turn in rec.get("conversations", []):
                    text = str(turn.get("value", "")).replace(IMAGE_TOKEN, "").strip()
                    if text:
                        yield text


def train_sentencepiece(lines: Iterable[str], out_model: str | Path, vocab_size: int = 512) -> Path:
    """Train a BPE sentencepiece model; ``vocab_size`` is an upper bound (small worlds have
    fewer distinct pieces, ``hard_vocab_limit=False`` lets the trainer stop early)."""
    import sentencepiece as spm

    corpus = [" ".join(TEMPLATE_WORDS)] * 4 + list(lines)
    if len(corpus) <= len(TEMPLATE_WORDS):
        raise ValueError("no text found to train the tokenizer on")
    # byte_fallback reserves 256 byte pieces; the vocabulary must also hold every character
    n_chars = len(set("".join(corpus)))
    vocab_size = max(vocab_size, 256 + 3 + n_chars + 16)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        split_by_whitespace=True,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
        num_threads=1,
        input_sentence_size=200000,
        shuffle_input_sentence=True,
    )
    out_model = Path(out_model)
    out_model.write_bytes(model.getvalue())
    return out_model


def hf_tokenizer_from_sentencepiece(model_file: str | Path, model_max_length: int = 256):
    """Wrap a sentencepiece BPE model as ``LlamaTokenizer`` with ``<image>`` and ``<pad>``."""
    from tokenizers.models import BPE
    from transformers import LlamaTokenizer
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    kwargs = SentencePieceExtractor(str(model_file)).extract(BPE)
    tok = LlamaTokenizer(
        vocab=kwargs["vocab"],
        merges=kwargs["merges"],
        add_prefix_space=False,
        model_max_length=model_max_length,
        padding_side="right",
        pad_token=PAD_TOKEN,
        add_bos_token=True,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )
    return tok


def build_tokenizer(json_paths: Iterable[str | Path], vocab_size: int = 512, model_max_length: int = 256):
    """Train on the given LLaVA JSON files and return the transformers tokenizer."""
    with tempfile.TemporaryDirectory() as tmp:
        model = train_sentencepiece(iter_llava_text(json_paths), Path(tmp) / "spm.model", vocab_size)
        return hf_tokenizer_from_sentencepiece(model, model_max_length)
