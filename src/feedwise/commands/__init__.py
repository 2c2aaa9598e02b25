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


def comma_list(text, kind=str, what: str = "value") -> list:
    """``"a,b,c"`` -> ``[kind(a), kind(b), kind(c)]``; an empty or malformed list is a FeedwiseError."""
    from feedwise.errors import FeedwiseError

    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise FeedwiseError(f"empty list of {what}s")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise FeedwiseError(f"bad {what} list {text!r}") from None


def comma_list_arg(kind=str, what: str = "value"):
    """:func:`comma_list` as an argparse ``type=`` (errors become argparse's usage errors)."""
    import argparse

    from feedwise.errors import FeedwiseError

    def parse(text):
        try:
            return comma_list(text, kind, what)
        except FeedwiseError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse
