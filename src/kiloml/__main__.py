"""``python -m kiloml`` runs the CLI."""

from kiloml.cli import main

main()
