"""Training-subset search with ensemble active learning (Chitta et al. 2019).

Public, engine-free API: :class:`EnsembleScorer` (streaming acquisition scores),
``ACQUISITIONS`` (name -> heuristic), selection helpers and the ensemble spec.
"""

from feedwise.subset.ensemble import CheckpointStreamer, EnsembleSpec, train_ensemble
from feedwise.subset.scorer import ACQUISITIONS, EnsembleScorer, check_probabilities, stacked_scores
from feedwise.subset.select import (Selection, check_fraction, class_composition, jaccard, proportional_quotas,
                                    select_random, select_top, subset_size)

__all__ = ["ACQUISITIONS", "CheckpointStreamer", "EnsembleScorer", "EnsembleSpec", "Selection", "check_fraction",
           "check_probabilities", "class_composition", "jaccard", "proportional_quotas", "select_random",
           "select_top", "stacked_scores", "subset_size", "train_ensemble"]
