"""One module per CLI subcommand group beyond `train`/`workloads`/`demo`.

Each module listed in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its
parsers and sets ``func`` to a function taking the parsed args and returning an exit code.
A module that does not exist yet is skipped, so studies can land one at a time.
"""

COMMAND_MODULES = [
    "feedwise.commands.batch_size",   # batch-size, noise-scale
    "feedwise.commands.emphasis",     # emphasis
    "feedwise.commands.subset",       # subset
    "feedwise.commands.scale_out",    # data-parallel runs
    "feedwise.commands.report",       # report
    "feedwise.commands.flag",         # flag
]
