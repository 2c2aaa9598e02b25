"""The training-subset study (Chitta et al. 2019): search and targets (``run.py``), errors, cost
account and break-even (``summary.py``), report, cli."""
