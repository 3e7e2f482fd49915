"""``python -m axeom`` is the ``axeom`` command."""

from .cli import main

main()
