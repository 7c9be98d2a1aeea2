from __future__ import annotations

from llava_structlora.toy.tokenizer import build_tokenizer


def test_tokenizer_round_trips_with_auto_tokenizer(data_root, tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer([data_root / "pretrain" / "llava_train.json"], vocab_size=300, model_max_length=64)
    text = "USER: <image><image>\nwhat color is the circle? ASSISTANT: red</s>"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.convert_tokens_to_ids("<image>")) == 2
    assert tok.decode(ids, skip_special_tokens=False).replace("<s>", "", 1) == text
    # shapes-world words are single pieces, unseen words fall back to bytes instead of <unk>
    assert len(tok(" circle", add_special_tokens=False)["input_ids"]) == 1
    assert tok.unk_token_id not in tok("zebra 42", add_special_tokens=False)["input_ids"]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == ids
    assert again.pad_token == "<pad>" and again.image_token == "<image>" and again.pad_token_id != again.eos_token_id
