"""Entry point the parent runs: ``python run_step.py <step file>``.

Kept tiny and dependency-free: it puts the shim on ``sys.path`` (so steps
can ``import motia_step`` too) and hands over to the runner.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from motia_step.runner import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))
