"""`python -m sadcodec` is the `sad` command."""

from .cli import main

main()
