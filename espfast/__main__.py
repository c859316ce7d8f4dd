import sys

from espfast.cli import main

sys.exit(main())
