"""``python -m ptycho ...`` runs the ``ptycho`` command line."""

import sys

from ptycho.cli import main

sys.exit(main())
