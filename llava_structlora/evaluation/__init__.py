"""llava_structlora/evaluation."""
