"""The emphasis study (Active Bias, Chang et al. 2017): run and tuning (``run.py``), paired tests
and Holm (``summary.py``), report, cli."""
