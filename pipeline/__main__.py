"""`python -m pipeline` is `ferry`."""

import sys

from pipeline.cli import main

# The guard matters: the binlog decoder process (selector.process) is started with
# multiprocessing's spawn, which re-imports the main module in the child.
if __name__ == "__main__":
    sys.exit(main())
