"""llava_structlora/utils."""
