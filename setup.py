"""Build hook only (the metadata is in pyproject.toml): ship the top-level notebooks/ and the
example parameter files inside the package, as rmsops/_data/, so that a wheel runs anywhere."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"notebooks": "*.ipynb", "parameters": "*.yaml"}


class BuildWithNotebooks(build_py):
    def run(self) -> None:
        super().run()
        for folder, pattern in SHIPPED.items():
            target = Path(self.build_lib) / "rmsops" / "_data" / folder
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((ROOT / folder).glob(pattern)):
                if source.stem != "demo":  # a served demo's file, valid only while it runs
                    shutil.copy2(source, target / source.name)


setup(cmdclass={"build_py": BuildWithNotebooks})
