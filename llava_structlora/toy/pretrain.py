"""Pretraining stages of the toy base (CPU, full training).

Stage 0 (contrastive): a stock ``CLIPModel(return_loss=True)`` whose vision tower has the base's
vision config and whose text tower is tiny, trained on (image, conversation text) pairs; its
vision weights are copied into the Llava vision tower. This gives the tower features that
separate colours/shapes/positions before the LM ever sees them (the prototype without it
answered at chance, docs/design.md §5).
Stage 2 (instruction pretraining): next-token loss on the assistant tokens of the pretraining
conversations, everything trainable, vision tower + projector at a higher lr.
(There is no frozen-LM "stage 1" alignment: the toy LM starts random, so there is nothing to
align to.)
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from llava_structlora.data import DataCollatorForSupervisedDataset

from .model_config import ContrastiveConfig, PretrainConfig

logger = logging.getLogger(__name__)


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


def _text_ids(samples: Sequence[dict], tokenizer, max_len: int = 48) -> torch.Tensor:
    """Answer tokens of each sample (the caption), ending with the highest-id token.

    CLIP's text pooling with ``eos_token_id == 2`` is the legacy ``argmax(input_ids)``; ending each
    text with the vocabulary's largest id (``<image>``, unused otherwise here) makes that
    argmax land on the end token of every text.
    """
    end = len(tokenizer) - 1
    rows = []
    for s in samples:
        ids = [t for t in s["labels"].tolist() if t >= 0 and t != tokenizer.eos_token_id]
        rows.append(torch.tensor(ids[-(max_len - 1) :] + [end]))
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=tokenizer.pad_token_id)


def contrastive_stage(
    samples: Sequence[dict], vision_config, tokenizer, cfg: ContrastiveConfig, seed: int
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train a CLIPModel on (pixel_values, answer text) and return its vision_model state dict + losses.

    Only samples whose answer has >= ``cfg.min_answer_tokens`` tokens (captions) are used: one-word
    answers ("no", "2") are shared by most images and make poor contrastive pairs.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig

    captions = [s for s in samples if int((s["labels"] >= 0).sum()) >= cfg.min_answer_tokens]
    samples = captions if len(captions) >= cfg.batch_size else list(samples)

    torch.manual_seed(seed)
    text_cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=2 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=2,
    )
    clip = CLIPModel(
        CLIPConfig(text_config=text_cfg.to_dict(), vision_config=vision_config.to_dict(), projection_dim=64)
    )
    opt = torch.optim.AdamW(clip.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(max(1, cfg.steps // 10), cfg.steps))
    g = torch.Generator().manual_seed(seed)
    losses = []
    clip.train()
    for step in range(cfg.steps):
        idx = torch.randperm(len(samples), generator=g)[: cfg.batch_size].tolist()
        batch = [samples[i] for i in idx]
        ids = _text_ids(batch, tokenizer)
        out = clip(
            input_ids=ids,
            attention_mask=(ids != tokenizer.pad_token_id).long(),
            pixel_values=torch.stack([b["pixel_values"] for b in batch]),
            return_loss=True,
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(clip.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(out.loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            logger.info("stage0 step %d/%d contrastive loss %.3f", step, cfg.steps, losses[-1])
    return clip.vision_model.state_dict(), losses


@torch.no_grad()
def standardize_projector_input(model, pixel_values: torch.Tensor) -> dict[str, float]:
    """Fold a per-channel standardization of the selected vision features into ``linear_1``.

    The stock Llava projector has no normalization, and the raw residual stream of a freshly
    contrastive-trained tower has a few huge, image-independent channels (measured: projector
    output norm ~380 vs ~0.25 for text embeddings), which drowns the image-dependent part after
    the LM's RMSNorm and lets the LM ignore the image. ``W1 (x - mu) / sigma + b1`` is still one
    Linear, so the saved model stays a stock LlavaForConditionalGeneration.
    """
    cfg = model.config
    hs = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[cfg.vision_feature_layer]
    feats = hs[:, 1:] if cfg.vision_feature_select_strategy == "default" else hs
    flat = feats.reshape(-1, feats.shape[-1])
    mu, sigma = flat.mean(0), flat.std(0).clamp_min(1e-3)
    lin = model.model.multi_modal_projector.linear_1
    lin.bias -= lin.weight @ (mu / sigma)
    lin.weight /= sigma
    return {"feature_abs_mean_max": float(mu.abs().max()), "feature_std_median": float(sigma.median())}


@torch.no_grad()
def image_gain(model, batch: dict) -> float:
    """Loss with every image swapped minus loss with the right images (nats): > 0 iff the LM uses them."""
    model.eval()
    real = model(**batch).loss.item()
    shuffled = model(**{**batch, "pixel_values": batch["pixel_values"].roll(1, 0)}).loss.item()
    model.train()
    return shuffled - real


def _batches(captions: Sequence[dict], samples: Sequence[dict], cfg: PretrainConfig, pad_token_id: int, seed: int):
    """``cfg.caption_steps`` batches of caption records, then batches of the full mix forever."""
    collate = DataCollatorForSupervisedDataset(pad_token_id)
    for data, n in ((captions, cfg.caption_steps), (samples, None)):
        if n == 0 or len(data) < cfg.batch_size:
            continue
        loader = DataLoader(
            list(data),
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
        )
        yield from (b for _, b in zip(range(n) if n is not None else itertools.count(), _cycle(loader)))


def instruction_stage(
    model, samples: Sequence[dict], pad_token_id: int, cfg: PretrainConfig, seed: int, min_caption_tokens: int = 4
) -> list[float]:
    """Stage 1 (captions) + stage 2 (full mix) next-token training; returns the loss curve."""
    torch.manual_seed(seed)
    named = list(model.named_parameters())
    tower = [p for n, p in named if "vision_tower" in n]
    proj = [p for n, p in named if "multi_modal_projector" in n]
    lm = [p for n, p in named if "vision_tower" not in n and "multi_modal_projector" not in n]
    opt = torch.optim.AdamW(
        [{"params": lm, "lr": cfg.lr}, {"params": proj, "lr": cfg.mm_lr}, {"params": tower, "lr": cfg.mm_lr}],
        weight_decay=cfg.weight_decay,
        betas=(0.9, 0.98),
    )
    total = cfg.caption_steps + cfg.steps
    base = _lr_lambda(cfg.warmup, total)
    # the contrastive tower stays frozen in stage 1 (as LLaVA's stage 1) so a random LM cannot wreck it
    frozen_first = lambda step: 0.0 if step < cfg.caption_steps else base(step)  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [base, base, frozen_first])
    captions = [s for s in samples if int((s["labels"] >= 0).sum()) >= min_caption_tokens]
    model.train()
    losses, t0 = [], time.time()
    for step, batch in zip(range(total), _batches(captions, samples, cfg, pad_token_id, seed)):
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == total - 1:
            logger.info(
                "stage1-2 step %d/%d loss %.3f image gain %.3f nats (%.1f s)",
                step,
                total,
                losses[-1],
                image_gain(model, batch),
                time.time() - t0,
            )
    model.eval()
    return losses
