"""Per-example scores: small objects that only compute a score from what they are given.

Emphasis (Active Bias sampling and weighting), subset acquisition and label flagging read the
same scores from here, the way baal's heuristics only compute a score:

=================  ==========  ===================================================================
score              given       value (higher = more emphasis / more informative)
=================  ==========  ===================================================================
``easy``           history     p̄, the mean probability of the example's label over training
``hard``           history     1 − p̄
``variance``       history     std̂ = sqrt(var + var²/(n − 1)) of that probability (n ≥ 2)
``closeness``      history     p̄ (1 − p̄), closeness to the decision threshold
``loss``           losses      the example's last loss −log p(label)
``entropy``        ensemble    H[p̄] of the ensemble's mean prediction
``bald``           ensemble    H[p̄] − mean_m H[p_m] (mutual information)
``variation-ratio`` ensemble   1 − (votes of the modal class) / M
``margin``         ensemble    1 − (p̄_top1 − p̄_top2)
``random``         ensemble    seeded uniform noise (the baseline)
``el2n``           dynamics    ‖softmax − onehot(label)‖₂ early in training (Paul et al. 2021)
``forgetting``     dynamics    forgetting events correct → incorrect; never learned: C (Toneva et al. 2019)
``aum``            dynamics    −mean margin (label logit − largest other) (Pleiss et al. 2020)
=================  ==========  ===================================================================

*history*: the rows of a :class:`feedwise.emphasis.PredictionHistory` (or the history itself);
*ensemble*: the running sums of a :class:`feedwise.subset.EnsembleScorer`; *dynamics*: the running sums of
one training run's evaluations, a :class:`feedwise.subset.TrainingDynamics`; *losses*: a vector of
per-example losses (NaN: not seen yet). A score is NaN where it is undefined (std̂ below two
observations, p̄ with none); :func:`emphasis` turns scores into non-negative emphasis ∝ score + ε,
the one place where undefined values are filled and ε is added.
"""

from feedwise.scores.base import SCORES, Score, emphasis, fill_value, get_score, register
from feedwise.scores import dynamics, ensemble, history, losses  # noqa: F401  (register the scores)

__all__ = ["SCORES", "Score", "emphasis", "fill_value", "get_score", "register"]
