"""llava_structlora/train."""
