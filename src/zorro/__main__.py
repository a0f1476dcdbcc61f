"""``python -m zorro`` runs the command line (also under ``torchrun``)."""

import sys

from zorro.cli import main

sys.exit(main())
