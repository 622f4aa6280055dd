"""Source → target fine-tuning and the few-shot embedding scores it reports."""
