"""The gradient noise scale from one short run (McCandlish et al. 2018): run, report, cli."""
