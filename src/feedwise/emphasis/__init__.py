"""Example emphasis after Active Bias (Chang et al. 2017, arXiv:1704.07433).

Usable without the engine, in any PyTorch loop:

- :class:`PredictionHistory` — per-example running statistics of the true-class probability
  (p̄, std̂, threshold closeness) in O(N) memory;
- :class:`ActiveBiasSampler` — a ``torch.utils.data.Sampler`` (SGD-SPV, -STC, -SE, -SD);
- :func:`emphasis_weights` — per-example loss weights (SGD-WPV, -WTC, -WE, -WD), mean 1;
- :data:`METHODS` — the method registry; :func:`probabilities` — sampling probabilities.

See :mod:`feedwise.emphasis.sampler` for the three-line ``DataLoader`` loop.
"""

from feedwise.emphasis.history import PredictionHistory
from feedwise.emphasis.methods import (DEFAULT_BURN_IN, DEFAULT_EPSILON, METHODS, Method, emphasis_weights,
                                       get_method, probabilities, scores)
from feedwise.emphasis.sampler import ActiveBiasSampler, WithIndex, true_class_probs

__all__ = ["PredictionHistory", "ActiveBiasSampler", "WithIndex", "true_class_probs", "emphasis_weights",
           "probabilities", "scores", "METHODS", "Method", "get_method", "DEFAULT_EPSILON", "DEFAULT_BURN_IN"]
