"""`python -m llava_structlora.train ...` (see main.py)."""

import sys

from .main import main

sys.exit(main())
