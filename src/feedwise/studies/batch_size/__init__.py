"""The batch-size study (Shallue et al. 2018): the request, budget and run (``run.py``), the Optuna
storage (``storage.py``) and its trials, points and exact pruning (``trials.py``), the search
space (``search_space.py``), the pure maths of steps-to-result, regimes and the knee
(``scaling.py``), the summary from the files (``summary.py``), its report and command line."""
