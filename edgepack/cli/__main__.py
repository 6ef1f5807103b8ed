"""``python -m edgepack.cli``."""

from edgepack.cli.main import main

main()
