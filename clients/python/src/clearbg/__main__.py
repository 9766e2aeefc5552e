"""`python -m clearbg` is the `clearbg` command."""

import sys

from clearbg.cli import main

sys.exit(main())
