"""Per-example prediction history of Active Bias (Chang et al. 2017), in O(N) memory.

Each time example ``i`` is in a batch, the probability the model gives to its (training)
label is one observation. The history keeps, per example, running sums only — never the
list of observations — so its memory does not grow with the number of epochs:

- ``count``: how many observations (an index repeated within one update counts each time);
- ``shift``: the example's first observation, and the sums ``s1 = Σ(x − shift)`` and
  ``s2 = Σ(x − shift)²`` in float64. Shifting by a value of the data avoids the catastrophic
  cancellation of raw sums of squares (var = (Σx² − (Σx)²/n)/(n−1) loses every digit when
  the variance is small next to the mean², as for confidently learned examples).

Statistics (exact definitions):

- p̄ = mean of the observations (NaN when n = 0);
- var = sample variance with ddof = 1, std̂ = sqrt(var + var²/(n − 1)) for n ≥ 2, NaN below;
- threshold closeness = p̄ (1 − p̄).
"""

from __future__ import annotations

import torch

from feedwise.errors import FeedwiseError
from feedwise.scores.history import stats_from_rows, std_hat

_KEYS = ("count", "shift", "s1", "s2")   # the columns of the (N, 4) float64 state


class PredictionHistory:
    """Running statistics of each example's true-class probability.

    >>> h = PredictionHistory(3)
    >>> h.update(torch.tensor([0, 0, 2]), torch.tensor([0.2, 0.4, 0.9]))
    >>> h.count().tolist(), round(float(h.mean()[0]), 6)
    ([2, 0, 1], 0.3)
    """

    def __init__(self, num_examples: int, device: torch.device | str = "cpu"):
        num_examples = int(num_examples)
        if num_examples <= 0:
            raise FeedwiseError(f"a prediction history needs at least one example, got {num_examples}")
        self.num_examples = num_examples
        self.device = torch.device(device)
        # one (N, 4) float64 tensor: a batch's rows are one gather, an update one index_add_
        self._state = torch.zeros(num_examples, 4, dtype=torch.float64, device=self.device)
        self._unseen = num_examples  # examples never observed; once 0, update skips the first-seen check
        self._buf = None
        self.updates = 0

    def __len__(self) -> int:
        return self.num_examples

    # ------------------------------------------------------------------ update (the hot path)
    def update(self, indices, true_class_probs) -> None:
        """Add one observation per entry: ``true_class_probs[k]`` for example ``indices[k]``."""
        idx = torch.as_tensor(indices, device=self.device).reshape(-1).long()
        x = torch.as_tensor(true_class_probs, device=self.device).reshape(-1)
        if idx.shape != x.shape:
            raise FeedwiseError(f"history update: {idx.numel()} indices but {x.numel()} probabilities")
        if idx.numel() == 0:
            return
        state = self._state
        if self._unseen:
            # examples seen for the first time take one of their observations as their shift
            first = state.index_select(0, idx)[:, 0] == 0
            if bool(first.any()):
                state[idx[first], 1] = x[first].to(torch.float64)
                self._unseen -= int(torch.unique(idx[first]).numel())
        # src = [1, 0, d, d²] with d = x − shift: written into a reused buffer (few small ops)
        src = self._src(len(idx))
        d = src[:, 2]
        d.copy_(x)
        d.sub_(state.index_select(0, idx)[:, 1])
        torch.mul(d, d, out=src[:, 3])
        state.index_add_(0, idx, src)
        self.updates += 1

    def _src(self, k: int) -> torch.Tensor:
        buf = self._buf
        if buf is None or buf.shape[0] != k:
            buf = torch.zeros(k, 4, dtype=torch.float64, device=self.device)
            buf[:, 0] = 1.0
            self._buf = buf
        return buf

    def check_indices(self, idx: torch.Tensor) -> None:
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_examples):
            raise FeedwiseError(f"history of {self.num_examples} examples got index outside [0, {self.num_examples})")

    # ------------------------------------------------------------------ statistics
    def rows(self, indices=None) -> torch.Tensor:
        if indices is None:
            return self._state
        return self._state[torch.as_tensor(indices, device=self.device).long()]

    def count(self, indices=None) -> torch.Tensor:
        """Observations per example (int64)."""
        return self.rows(indices)[:, 0].to(torch.int64)

    def mean(self, indices=None) -> torch.Tensor:
        """p̄ per example (float64); NaN where there is no observation."""
        return stats_from_rows(self.rows(indices))[1]

    def var(self, indices=None) -> torch.Tensor:
        """Sample variance (ddof = 1) per example; NaN below two observations."""
        return stats_from_rows(self.rows(indices))[2]

    def std(self, indices=None) -> torch.Tensor:
        """Active Bias prediction variance std̂ = sqrt(var + var²/(n−1)); NaN below n = 2."""
        n, _, v = stats_from_rows(self.rows(indices))
        return std_hat(n, v)

    def threshold_closeness(self, indices=None) -> torch.Tensor:
        """p̄ (1 − p̄) per example; NaN where there is no observation."""
        m = self.mean(indices)
        return m * (1 - m)

    # ------------------------------------------------------------------ checkpoints
    def nbytes(self) -> int:
        """Memory held by the history (bytes): four float64 numbers per example."""
        return self._state.element_size() * self._state.numel()

    def state_dict(self) -> dict:
        return {"num_examples": self.num_examples, "updates": self.updates,
                **{k: self._state[:, j].clone() for j, k in enumerate(_KEYS)}}

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("num_examples", -1)) != self.num_examples:
            raise FeedwiseError(f"history state is for {state.get('num_examples')} examples, "
                                f"this history has {self.num_examples}")
        cols = []
        for k in _KEYS:
            if k not in state:
                raise FeedwiseError(f"history state lacks '{k}'")
            t = torch.as_tensor(state[k], dtype=torch.float64)
            if t.shape != (self.num_examples,):
                raise FeedwiseError(f"history state '{k}' has shape {tuple(t.shape)}, expected ({self.num_examples},)")
            cols.append(t)
        self._state = torch.stack(cols, 1).to(self.device).contiguous()
        self._unseen = int((self._state[:, 0] == 0).sum())
        self.updates = int(state.get("updates", 0))

    def to(self, device) -> "PredictionHistory":
        self.device = torch.device(device)
        self._state = self._state.to(self.device)
        self._buf = None
        return self
