"""`feedwise flag`: label issues from a training run or from the user's own files: run, report, cli."""
