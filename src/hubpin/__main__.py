"""`python -m hubpin …`: the same CLI as the `hubpin` command."""

from .cli import main

main()
