"""llava_structlora: StructLoRA fine-tuning recipes for LLaVA."""

import logging

__version__ = "0.1.0"

# bitsandbytes (imported by PEFT) logs, on every import on a CPU with AVX512-BF16, that it could not fetch an
# optional hub kernel ("pip install kernels"). Nothing here needs it (QLoRA's CPU path runs without it, and
# nothing is downloaded at run time), so that one logger is quieted once, here, for every entry point.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
