"""The one exception type for user mistakes.

Anything raised as :class:`FeedwiseError` is printed by the CLI as a single line
(``feedwise: error: ...``) with a non-zero exit, never as a traceback.
"""


class FeedwiseError(Exception):
    """A problem with the user's input or environment, explained in one line."""
