"""``python -m dysen.cli``: the same as the ``dysen`` console script."""

import sys

from dysen.cli import main

sys.exit(main())
