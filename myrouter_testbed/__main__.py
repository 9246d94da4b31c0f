"""``python -m myrouter_testbed``: the demo that ``make run`` runs (see :mod:`myrouter_testbed.demo`)."""

import sys

from myrouter_testbed.demo import main

if __name__ == "__main__":
    sys.exit(main())
