"""``python -m deepemocluster.transfer``: source → target fine-tuning (``finetune.py``)."""

import sys

from deepemocluster.transfer.finetune import main

sys.exit(main())
