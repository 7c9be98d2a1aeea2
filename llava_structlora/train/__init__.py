"""Training: config dataclasses (YAML + CLI), methods (StructLoRA / PEFT baselines / full), the Trainer
subclass, checkpoints and deliverables.

    python -m llava_structlora.train --help           # the entry point (run under `deepspeed`)

The checkout-aware launcher that scripts/finetune_*.sh call is `python -m recipes.finetune` (outside the library).
"""
