"""llava_structlora/toy."""
