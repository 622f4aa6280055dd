"""``python -m deepemocluster.predict``: the entry point of ``deepemocluster.serving.predict``."""

import sys

from deepemocluster.serving.predict import main

if __name__ == "__main__":
    sys.exit(main())
