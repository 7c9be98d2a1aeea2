"""Ask a (fine-tuned) LLaVA about an image, from the command line.

    python -m llava_structlora.chat --model BASE [--adapter A] --image I --question "What is it?" [--question ...]
    python -m llava_structlora.chat --model BASE [--adapter A] --image I          # interactive

`--adapter` is anything evaluation takes: a training run dir (`outputs/<run>`), a release folder or PEFT
adapter, a StructLoRA state dir, or a merged model (then `--model` may be omitted); it is merged into the
base, so answering costs exactly the base. The prompt is encoded exactly as evaluation encodes it
(`data.encode_prompt`, the run's conversation format from its run.json) and decoded greedily with the
evaluator's batched, KV-cached `generate_batch`: several `--question`s about one image are one batch.

Interactive: one question per line, each asked fresh about the current image (the recipes train and
evaluate single-turn); `/image PATH` switches the image, `/quit` (or an empty line / end of input) ends.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from llava_structlora.utils.errors import UserError, entry_point

PROMPT = "> "


def conversation_format(adapter: str | None, given: str | None) -> str:
    """`--conv_template`, else the format the run recorded (run.json of a run dir or release), else the default."""
    from llava_structlora.data.conversation import DEFAULT_CONV_TEMPLATE, conv_system

    if given:
        conv_system(given)  # unknown names: an error listing the known ones
        return given
    from llava_structlora.rundir import RunDir

    run = RunDir.holding(adapter) if adapter else None  # a run dir, a release, or a run's adapter/
    return run.conv_template() if run is not None else DEFAULT_CONV_TEMPLATE


class Chat:
    """A loaded model + processor answering questions about one image at a time."""

    def __init__(self, model, processor, conv_template: str, max_new_tokens: int) -> None:
        from llava_structlora.data.conversation import conv_system

        self.model, self.processor = model, processor
        self.system, self.max_new_tokens = conv_system(conv_template), max_new_tokens
        self.image: Path | None = None
        self._pixels = None

    def set_image(self, path: str | Path) -> None:
        from llava_structlora.evaluation.generate import load_images

        path = Path(path)
        if not path.is_file():
            raise UserError(f"image {path} not found")
        self._pixels = load_images([path], self.processor)[0]  # decoded once per image, not per question
        self.image = path

    def ask(self, questions: list[str]) -> list[str]:
        """Greedy answers to `questions` about the current image, generated as one batch."""
        from llava_structlora.data import encode_prompt
        from llava_structlora.evaluation.generate import Question, generate_batch, question_image_size

        if self.image is None:
            raise UserError("no image: pass --image PATH (or type /image PATH)")
        qs = [Question(i, q, self.image) for i, q in enumerate(questions)]
        size = question_image_size(qs[0], self.processor)
        ids = [encode_prompt(q.text, self.processor, system=self.system, image_size=size) for q in qs]
        pixels = [self._pixels] * len(qs)
        return generate_batch(self.model, self.processor, qs, ids, self.max_new_tokens, pixels)


def interactive(chat: Chat, lines: Iterable[str], out: TextIO) -> int:
    """The read-answer loop over `lines`; returns how many questions were answered."""
    n = 0
    out.write(f"[chat] image: {chat.image}. One question per line; /image PATH, /quit.\n{PROMPT}")
    out.flush()
    for raw in lines:
        line = raw.strip()
        if line in ("", "/quit", "/exit"):
            break
        if line.startswith("/image"):
            try:
                chat.set_image(line.removeprefix("/image").strip())
                out.write(f"[chat] image: {chat.image}\n")
            except (UserError, OSError) as e:  # a typo in a path should not end the session
                out.write(f"[chat] {e}\n")
        else:
            out.write(chat.ask([line])[0] + "\n")
            n += 1
        out.write(PROMPT)
        out.flush()
    out.write("\n")
    return n


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m llava_structlora.chat",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", help="base model dir (save_pretrained layout); optional with a merged --adapter")
    ap.add_argument("--adapter", help="run dir, release / PEFT adapter, StructLoRA dir, or merged model")
    ap.add_argument("--image", required=True, help="image file to ask about")
    ap.add_argument("--question", action="append", help="a question (repeatable); none: interactive")
    ap.add_argument("--conv_template", help="conversation format (default: the run's, from its run.json)")
    ap.add_argument("--max_new_tokens", type=int, default=64)
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    return ap


@entry_point("chat")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from llava_structlora.evaluation.load import adapter_kind, load_model

    kind, path = adapter_kind(args.adapter)
    if args.model is None and kind != "merged":
        raise UserError("--model BASE is needed unless --adapter is a merged model")
    if args.max_new_tokens < 1:
        raise UserError(f"--max_new_tokens {args.max_new_tokens}: must be >= 1")
    model, processor = load_model(args.model or path, args.adapter, dtype=args.dtype, device=args.device)
    chat = Chat(model, processor, conversation_format(args.adapter, args.conv_template), args.max_new_tokens)
    chat.set_image(args.image)
    if args.question:
        for q, a in zip(args.question, chat.ask(args.question)):
            print(a if len(args.question) == 1 else f"Q: {q}\nA: {a}", flush=True)
        return 0
    interactive(chat, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
