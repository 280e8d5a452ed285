"""``python -m motia_state``: the same as the ``motia-state`` command."""

import sys

from .cli import main

sys.exit(main())
