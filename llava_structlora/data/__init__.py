"""llava_structlora/data."""
