"""`python -m dref` runs the `dref` command."""

import sys

from dref.cli import main

if __name__ == "__main__":
    sys.exit(main())
