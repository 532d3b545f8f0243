"""`python -m inspector ...`: the CLI, also as torchrun starts it (`torchrun ... -m inspector train ...`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
