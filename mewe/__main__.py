import sys

from mewe.cli import main

sys.exit(main())
