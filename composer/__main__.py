"""`python -m composer` is the `composer` command line."""

import sys

from composer.cli import main

sys.exit(main())
