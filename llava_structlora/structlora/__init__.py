"""llava_structlora/structlora."""
