"""llava_structlora: StructLoRA fine-tuning recipes for LLaVA."""

__version__ = "0.1.0"
