"""Ship ``bindings/`` inside the wheel as ``motia_state/_bindings``.

Everything else is declared in pyproject.toml. The runners must be found by
a regular (non-editable) install, and the bindings stay a top-level folder
of the repository, so the build copies them into the package.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithBindings(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "bindings"
        target = Path(self.build_lib) / "motia_state" / "_bindings"
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(
                source,
                target,
                ignore=shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc", "test", "tests"),
            )


setup(cmdclass={"build_py": BuildWithBindings})
