"""`python -m sadcodec ...` is the `sad` command."""

from .cli import run

if __name__ == "__main__":
    run()
