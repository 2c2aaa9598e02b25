"""`feedwise train`: one run of the engine into the results layout (run, report, cli)."""
