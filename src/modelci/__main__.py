"""Console-script entry point: `modelci` and `python -m modelci`."""

import sys

from modelci.cli import main


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
