import sys

from kaffa.cli import main

sys.exit(main())
