"""``python -m opflow`` is the ``opflow`` command."""

import sys

from opflow.cli import main

sys.exit(main())
