"""llava_structlora/metrics."""
