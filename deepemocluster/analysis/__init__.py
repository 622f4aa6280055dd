"""What the clusters say about emotion: contingency statistics, plots, long recordings, the run's report."""
