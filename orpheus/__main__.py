"""`python -m orpheus` runs the CLI."""

from orpheus.cli import main

main()
