"""``python -m nvppl.cli``: the ``nvppl`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
