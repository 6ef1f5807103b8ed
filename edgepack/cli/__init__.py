"""The ``edgepack`` command line (``edgepack.cli:main``)."""

from edgepack.cli.main import cli, main

__all__ = ["cli", "main"]
