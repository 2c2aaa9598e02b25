import numpy as np
import pytest
import torch

from feedwise.errors import FeedwiseError
from feedwise.feeds import ScanFeeder, UniformFeeder, WeightedFeeder, make_feeder


def _draw(feeder, n, bs, steps, seed=0):
    feeder.bind(n, torch.Generator().manual_seed(seed))
    return torch.cat([feeder.next_batch(bs)[0] for _ in range(steps)])


@pytest.mark.parametrize("bs", [1, 7, 10, 33])
def test_uniform_sees_every_example_once_per_epoch(bs):
    n = 100
    seq = _draw(UniformFeeder(), n, bs, steps=(5 * n) // bs + 1)
    for e in range(len(seq) // n):
        assert sorted(seq[e * n:(e + 1) * n].tolist()) == list(range(n))
    # and epochs are shuffled differently
    assert not torch.equal(seq[:n], seq[n:2 * n])


def test_uniform_is_reproducible_from_the_generator():
    assert torch.equal(_draw(UniformFeeder(), 50, 8, 20, seed=1), _draw(UniformFeeder(), 50, 8, 20, seed=1))
    assert not torch.equal(_draw(UniformFeeder(), 50, 8, 20, seed=1), _draw(UniformFeeder(), 50, 8, 20, seed=2))


def test_scan_is_a_fixed_order():
    seq = _draw(ScanFeeder(), 10, 4, 5)
    assert seq.tolist() == [i % 10 for i in range(20)]


def test_weighted_sampling_follows_the_probabilities():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    seq = _draw(WeightedFeeder(w), 4, 1000, 40)
    freq = np.bincount(seq.numpy(), minlength=4) / len(seq)
    assert np.allclose(freq, (w / w.sum()).numpy(), atol=0.01)


def test_weighted_rejects_bad_weights():
    for w in (torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, float("nan")]), torch.ones(3)):
        with pytest.raises(FeedwiseError):
            WeightedFeeder(w).bind(2, torch.Generator())


def test_unknown_feed():
    with pytest.raises(FeedwiseError, match="unknown feed 'nope'"):
        make_feeder("nope")
