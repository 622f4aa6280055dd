"""``python -m deepemocluster.evaluate``: the entry point of ``deepemocluster.serving.evaluate``."""

import sys

from deepemocluster.serving.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
