"""Scores of one training run's dynamics, read from the running sums of a
:class:`feedwise.subset.TrainingDynamics` (the model's predictions on every training example at
each of C evaluations along its training). All are difficulties: higher = harder.

- ``el2n`` (Paul et al. 2021, "Deep learning on a data diet"): ‖softmax(z) − onehot(y)‖₂ early in
  training, averaged over the first evaluations configured (``el2n_checkpoints``) — and over the
  runs, when several are given.
- ``forgetting`` (Toneva et al. 2019): the number of forgetting events, transitions from correct
  to incorrect between consecutive evaluations; an example never predicted correctly at any
  evaluation is the most forgettable and scores C (more than any learned one can have, ≤ ⌊C/2⌋).
- ``aum`` (Pleiss et al. 2020): minus the area under the margin, −mean over the evaluations of
  (the logit of the assigned label − the largest other logit); a low or negative margin marks a
  hard or mislabelled example. (Pleiss et al. average the margin over the training iterations at
  which the example is in a batch; here it is averaged over the C evaluations of the whole pool.)
"""

from __future__ import annotations

import numpy as np

from feedwise.scores.base import Score, register


class DynamicsScore(Score):
    source = "dynamics"


class EL2N(DynamicsScore):
    name, description = "el2n", "‖softmax − onehot(label)‖₂ early in training (Paul et al. 2021)"

    def __call__(self, state, rng=None):
        return state.el2n_sum / max(1, state.el2n_count)


class Forgetting(DynamicsScore):
    name, description = "forgetting", "forgetting events, correct → incorrect (Toneva et al. 2019); never learned: C"

    def __call__(self, state, rng=None):
        return np.where(state.learned, state.forgets, state.checkpoints).astype(np.float64)


class AUM(DynamicsScore):
    name, description = "aum", "−mean margin: −(logit of the label − largest other logit) (Pleiss et al. 2020)"

    def __call__(self, state, rng=None):
        return -state.margin_sum / max(1, state.checkpoints)


for _s in (EL2N(), Forgetting(), AUM()):
    register(_s)
