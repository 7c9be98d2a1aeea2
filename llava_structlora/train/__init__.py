"""Training: config dataclasses (YAML + CLI), methods (StructLoRA / PEFT baselines / full), the Trainer
subclass, checkpoints, deliverables, and the recipe pipeline.

    python -m llava_structlora.train --help           # the entry point (run under `deepspeed`)
    python -m llava_structlora.train.pipeline --task coco   # what scripts/finetune_*.sh call
"""
