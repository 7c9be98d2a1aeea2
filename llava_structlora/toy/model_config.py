"""Preset configs of the toy LLaVA base: architecture + pretraining schedule, one dataclass each.

Architecture as LLaVA-1.5 at toy scale: CLIP vision tower, 2-layer MLP projector with GELU,
Llama LM. Image 48 px with 16 px patches = 3x3 patches, one per cell of the shapes world's
3x3 grid, so each image token sees one whole object (docs/design.md §5: grounding is the hard part;
a 32 px / 8 px tower at chance was the prototype's failure). CLS is dropped
(``vision_feature_select_strategy="default"``) -> 9 image tokens per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    image_size: int = 48
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    vision_ffn: int = 256
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_ffn: int = 384
    vocab_size: int = 512  # sentencepiece upper bound; the real size comes from the tokenizer
    model_max_length: int = 96
    vision_feature_layer: int = -2  # penultimate, as LLaVA-1.5: the CLS the contrastive loss trains reads these tokens


@dataclass(frozen=True)
class ContrastiveConfig:
    """Stage 0: CLIP contrastive training of the vision tower on (image, caption) pairs."""

    steps: int = 200
    batch_size: int = 128
    lr: float = 2e-3
    text_hidden: int = 64
    text_layers: int = 1
    min_answer_tokens: int = 4  # caption-like answers only


@dataclass(frozen=True)
class PretrainConfig:
    """Stages 1-2: full next-token training; stage 1 on caption records only (LLaVA's stage-1 data),
    stage 2 on the whole pretraining mix. One optimizer and one schedule over both."""

    caption_steps: int = 300  # stage 1: captions cannot be answered from priors -> forces looking
    # 2400, not 800: at 800 (one pass over the mix) shape/size were at chance on the pretraining probe and
    # LoRA gained only +1.5 VQAv2 points over the base (0.3 seed stds), too little to rank methods;
    # at 2400 the probe reads 0.66 (shape 1.00, size 0.85) and LoRA's VQAv2 gain clears the 10-std bar
    # (docs/base.md, "Pretraining length"; docs/RESULTS.md, the base-margin record).
    steps: int = 2400
    batch_size: int = 32
    lr: float = 1.5e-3
    mm_lr: float = 3e-3  # vision tower + projector (higher, as the brief suggests)
    warmup: int = 30
    weight_decay: float = 0.0


@dataclass(frozen=True)
class BasePreset:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seed: int = 0
    threads: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, BasePreset] = {
    "default": BasePreset("default"),
    "smoke": BasePreset(
        "smoke",
        model=ModelConfig(
            vision_hidden=32,
            vision_layers=1,
            vision_heads=2,
            vision_ffn=64,
            text_hidden=48,
            text_layers=1,
            text_heads=2,
            text_ffn=96,
            vocab_size=384,
        ),
        contrastive=ContrastiveConfig(steps=10, batch_size=32, text_hidden=32),
        pretrain=PretrainConfig(caption_steps=5, steps=15, batch_size=16, warmup=2),
    ),
    # The study's deeper testbed (issue #20): 4 CLIP layers (3 used under vision_feature_layer=-2) and 4 Llama
    # layers, so each q/v depth chain has 2-3 smoothing edges instead of 0-1, at 96-d so a run costs about what a
    # default run does; same pretraining schedule as the default base. One thread: two world seeds build side
    # by side on the 2-core machine.
    "deep": BasePreset(
        "deep",
        model=ModelConfig(
            vision_hidden=96,
            vision_layers=4,
            vision_heads=4,
            vision_ffn=192,
            text_hidden=96,
            text_layers=4,
            text_heads=4,
            text_ffn=288,
        ),
        threads=1,
    ),
}


def get_preset(name: str) -> BasePreset:
    if name not in PRESETS:
        raise ValueError(f"unknown base preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def llava_config(
    m: ModelConfig, vocab_size: int, image_token_id: int, pad_token_id: int, bos_token_id: int, eos_token_id: int
):
    """transformers LlavaConfig for the toy base (stock classes only, so from_pretrained works)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=m.vision_hidden,
        intermediate_size=m.vision_ffn,
        num_hidden_layers=m.vision_layers,
        num_attention_heads=m.vision_heads,
        image_size=m.image_size,
        patch_size=m.patch_size,
        projection_dim=m.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=m.text_hidden,
        intermediate_size=m.text_ffn,
        num_hidden_layers=m.text_layers,
        num_attention_heads=m.text_heads,
        num_key_value_heads=m.text_heads,
        max_position_embeddings=max(128, m.model_max_length),
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=m.vision_feature_layer,
        image_seq_length=(m.image_size // m.patch_size) ** 2,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
    )
