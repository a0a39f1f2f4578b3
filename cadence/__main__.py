"""``python -m cadence``: the command line, as the ``cadence`` script runs it."""

import sys

from cadence.cluster.cli import main

sys.exit(main())
