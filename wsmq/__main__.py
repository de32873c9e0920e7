import sys

from wsmq.cli import main

sys.exit(main())
