"""`python -m sadcodec ...` is the `sad` command."""

from .cli import main

if __name__ == "__main__":
    main()
