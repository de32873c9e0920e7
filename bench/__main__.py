"""Entry point: ``python -m bench [--quick] [--scenarios a,b] [--out DIR]``."""

import sys

from bench.run import main

sys.exit(main())
