"""`python -m connector ...` runs the same command line as `posture-connector`."""

import sys

from connector.entry import main

sys.exit(main())
