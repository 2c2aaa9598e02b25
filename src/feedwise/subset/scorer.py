"""Streaming ensemble acquisition scores (Chitta et al. 2019), usable without the engine.

An implicit ensemble has M members (E models x C checkpoints). Each member's softmax
probabilities over the pool (N x K) are added one at a time and folded into running sums;
nothing of shape M x N x K is ever held. The state is

    sum_p    N x K  float64   sum over members of p_m            -> p̄ = sum_p / M
    sum_ent  N      float64   sum over members of H[p_m]         -> mean member entropy
    votes    N x K  int32     members whose argmax is class k     -> modal vote count

so memory is O(N·K) whatever M is. The acquisition heuristics that read the state (entropy,
bald, variation-ratio, margin, random; higher means more informative) are the ensemble scores
of :mod:`feedwise.scores.ensemble`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedwise.errors import FeedwiseError
from feedwise.scores import SCORES
from feedwise.scores.ensemble import EnsembleScore, entropy

CHUNK = 8192           # rows per chunk when folding a member in
PROB_TOLERANCE = 1e-3   # |row sum − 1| and negativity allowed in a member's probabilities


def check_probabilities(probs, num_examples: int | None = None, num_classes: int | None = None,
                        tol: float = PROB_TOLERANCE) -> np.ndarray:
    """Return ``probs`` as an N x K float array, or raise FeedwiseError if it is not a distribution per row."""
    if type(probs).__module__.startswith("torch"):      # a torch tensor, without importing torch here
        probs = probs.detach().cpu().numpy()
    p = np.asarray(probs)
    if p.ndim != 2:
        raise FeedwiseError(f"probabilities must be a 2-D array (examples x classes), got shape {p.shape}")
    if num_examples is not None and num_classes is not None and p.shape != (num_examples, num_classes):
        raise FeedwiseError(f"probabilities have shape {p.shape}, expected ({num_examples}, {num_classes})")
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise FeedwiseError("probabilities contain NaN or infinite values")
    lo = float(p.min()) if p.size else 0.0
    if lo < -tol:
        raise FeedwiseError(f"probabilities must be non-negative (found {lo:.3g})")
    if p.size:
        dev = float(np.abs(p.sum(axis=1, dtype=np.float64) - 1.0).max())
        if dev > tol:
            raise FeedwiseError(f"probability rows must sum to 1 (worst row is off by {dev:.3g}, tolerance {tol})")
    return p


@dataclass
class ScorerState:
    """What the heuristics read: running sums over the members added so far."""

    sum_p: np.ndarray       # N x K float64
    sum_ent: np.ndarray     # N float64
    votes: np.ndarray       # N x K int32
    num_members: int

    def mean_p(self) -> np.ndarray:
        return self.sum_p / max(1, self.num_members)


# the acquisition heuristics are the ensemble scores of feedwise.scores
ACQUISITIONS: dict[str, EnsembleScore] = {n: sc for n, sc in SCORES.items() if sc.source == "ensemble"}


def get_acquisition(name: str) -> EnsembleScore:
    if name not in ACQUISITIONS:
        raise FeedwiseError(f"unknown acquisition '{name}' (known: {', '.join(ACQUISITIONS)})")
    return ACQUISITIONS[name]


class EnsembleScorer:
    """Accumulate ensemble members one at a time; memory O(N·K), independent of the number of members.

    >>> s = EnsembleScorer(num_examples=3, num_classes=2)
    >>> s.add([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    >>> s.num_members
    1
    """

    def __init__(self, num_examples: int, num_classes: int, seed: int = 0):
        if num_examples <= 0 or num_classes <= 0:
            raise FeedwiseError(f"scorer needs a positive pool and class count, got {num_examples} x {num_classes}")
        self.num_examples, self.num_classes, self.seed = int(num_examples), int(num_classes), seed
        self.state = ScorerState(np.zeros((num_examples, num_classes)), np.zeros(num_examples),
                                 np.zeros((num_examples, num_classes), dtype=np.int32), 0)

    @property
    def num_members(self) -> int:
        return self.state.num_members

    def add(self, probs) -> None:
        """Fold one member's N x K softmax probabilities into the running sums."""
        p = check_probabilities(probs, self.num_examples, self.num_classes)
        st = self.state
        for i in range(0, self.num_examples, CHUNK):   # row chunks bound the float64 temporaries
            c = p[i:i + CHUNK]
            st.sum_p[i:i + CHUNK] += c
            st.sum_ent[i:i + CHUNK] += entropy(c)
            _add_votes(st.votes[i:i + CHUNK], c.argmax(axis=1))
        st.num_members += 1

    def scores(self, name: str) -> np.ndarray:
        """The N-vector of ``name``'s scores (higher = more informative)."""
        h = get_acquisition(name)
        if h.needs_members and self.num_members == 0:
            raise FeedwiseError(f"no ensemble members were added; '{name}' needs at least one")
        return h(self.state, np.random.default_rng(self.seed))

    # ------------------------------------------------------------------ persistence (resume)
    def state_dict(self) -> dict:
        st = self.state
        return {"sum_p": st.sum_p, "sum_ent": st.sum_ent, "votes": st.votes, "num_members": np.int64(st.num_members)}

    def load_state_dict(self, d) -> None:
        if tuple(d["sum_p"].shape) != (self.num_examples, self.num_classes):
            raise FeedwiseError(f"saved scorer state has shape {tuple(d['sum_p'].shape)}, "
                                f"expected ({self.num_examples}, {self.num_classes})")
        self.state = ScorerState(np.array(d["sum_p"], dtype=np.float64), np.array(d["sum_ent"], dtype=np.float64),
                                 np.array(d["votes"], dtype=np.int32), int(d["num_members"]))


def _add_votes(votes: np.ndarray, winners: np.ndarray) -> None:
    """votes[i, winners[i]] += 1 for every row i, without a Python loop or an N x K temporary."""
    flat = votes.reshape(-1)
    flat[np.arange(votes.shape[0]) * votes.shape[1] + winners] += 1


def stacked_scores(member_probs, name: str, seed: int = 0) -> np.ndarray:
    """Reference: stack all members (M x N x K) and compute ``name`` directly, as baal's heuristics do."""
    P = np.asarray(member_probs, dtype=np.float64)
    M, N, K = P.shape
    mean = P.mean(axis=0)
    if name == "entropy":
        return entropy(mean)
    if name == "bald":
        return np.maximum(entropy(mean) - entropy(P).mean(axis=0), 0.0)
    if name == "variation-ratio":
        winners = P.argmax(axis=2)                                        # M x N
        counts = np.stack([(winners == k).sum(axis=0) for k in range(K)], axis=1)
        return 1.0 - counts.max(axis=1) / M
    if name == "margin":
        s = np.sort(mean, axis=1)
        return 1.0 - (s[:, -1] - s[:, -2])
    if name == "random":
        return np.random.default_rng(seed).random(N)
    raise FeedwiseError(f"unknown acquisition '{name}' (known: {', '.join(ACQUISITIONS)})")
