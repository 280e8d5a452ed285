"""``python -m motia_state.cli``: the same as ``motia-state``."""

import sys

from . import main

sys.exit(main())
