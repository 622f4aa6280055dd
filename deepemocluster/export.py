"""``python -m deepemocluster.export``: the entry point of ``deepemocluster.serving.export``."""

import sys

from deepemocluster.serving.export import main

if __name__ == "__main__":
    sys.exit(main())
