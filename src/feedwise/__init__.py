"""feedwise: measure how to feed data to a neural network.

Library first, CLI second. The public pieces:

- :mod:`feedwise.workloads`  -- ``get_workload(name)``, the registry of dataset + model + target.
- :mod:`feedwise.engine`     -- ``Trainer`` / ``train``, the one training loop.
- :mod:`feedwise.feeds.base`    -- which examples go into each batch, with what weights.
"""

__version__ = "0.1.0"

from feedwise.errors import FeedwiseError  # noqa: E402

__all__ = ["FeedwiseError", "__version__"]
