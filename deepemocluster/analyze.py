"""``python -m deepemocluster.analyze``: the entry point of ``deepemocluster.analysis.analyze``."""

import sys

from deepemocluster.analysis.analyze import main

if __name__ == "__main__":
    sys.exit(main())
