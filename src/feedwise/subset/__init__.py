"""Training-subset search with ensemble active learning (Chitta et al. 2019).

Public, engine-free API: :class:`EnsembleScorer` (streaming acquisition scores),
``ACQUISITIONS`` (name -> heuristic), :class:`TrainingDynamics` (EL2N, forgetting events and
area under the margin from one training run), selection helpers (top fraction, coverage-centric
selection) and the ensemble spec.
"""

from feedwise.subset.dynamics import DYNAMICS_SCORES, TrainingDynamics
from feedwise.subset.ensemble import CheckpointStreamer, EnsembleSpec, train_ensemble
from feedwise.subset.scorer import ACQUISITIONS, EnsembleScorer, check_probabilities, stacked_scores
from feedwise.subset.select import (SELECTIONS, Selection, ccs_allocation, check_fraction, class_composition, jaccard,
                                    proportional_quotas, select_ccs, select_random, select_top, subset_size)

__all__ = ["ACQUISITIONS", "CheckpointStreamer", "DYNAMICS_SCORES", "EnsembleScorer", "EnsembleSpec", "SELECTIONS",
           "Selection", "TrainingDynamics", "ccs_allocation", "check_fraction", "check_probabilities",
           "class_composition", "jaccard", "proportional_quotas", "select_ccs", "select_random", "select_top",
           "stacked_scores", "subset_size", "train_ensemble"]
