"""`python -m connector ...` runs the same command line as `posture-connector`."""

import sys

from connector.cli import main

sys.exit(main())
