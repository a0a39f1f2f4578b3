"""python -m cadence.cluster.cli: the cadence command."""

import sys

from .main import main

sys.exit(main())
