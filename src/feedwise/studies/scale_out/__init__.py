"""`feedwise parallel`: real data parallelism (sync DDP, local SGD, Hogwild) and the alpha-beta
projection: run, report, cli."""
