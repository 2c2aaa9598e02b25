"""The noise-scale monitor for a user's own loop: against an exact per-example computation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from feedwise.errors import FeedwiseError
from feedwise.monitor import NoiseScaleMonitor, estimate, finite_c

N, D, K = 400, 10, 3


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, D, generator=g), torch.randint(0, K, (N,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Linear(D, K)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss1(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per = vmap(grad(loss1), in_dims=(None, 0, 0))(params, x, y)       # exact per-example gradients
    flat = torch.cat([v.reshape(N, -1) for v in per.values()], 1).double()
    G = flat.mean(0)
    exact = float(((flat - G) ** 2).sum(1).mean() / (G @ G))         # tr(Sigma) / |G|^2, Sigma over the N examples
    return model, x, y, exact


def test_estimator_is_unbiased_in_expectation():
    # E|G_B|^2 = |G|^2 + c(B) tr(Sigma): plugging the expectations in gives back |G|^2 and tr(Sigma)
    g2, tr, n = 2.0, 30.0, 500
    e = lambda b: g2 + finite_c(b, n) * tr  # noqa: E731
    assert estimate(e(8), e(128), 8, 128, n) == pytest.approx((g2, tr))
    assert finite_c(8, None) == 1 / 8 and finite_c(500, 500) == 0.0


def test_monitor_at_fixed_parameters_agrees_with_the_exact_noise_scale(problem):
    """100 probes of 320 examples (20 chunks of 16) drawn without replacement from 400, at fixed
    parameters: the ratio of means is within 5% of the exact tr(Sigma)/|G|^2; without the
    finite-dataset correction it is far off (B/N = 0.8)."""
    model, x, y, exact = problem
    with_n, without = NoiseScaleMonitor(num_examples=N), NoiseScaleMonitor()
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        idx = torch.randperm(N, generator=gen)[:320]
        row = with_n.probe(model, F.cross_entropy, x[idx], y[idx], 16)
        without.record(row["g2_small"], row["g2_big"], 16, 320)
    assert with_n.summary()["b_simple_g2_weighted"] == pytest.approx(exact, rel=0.05)
    assert without.summary()["b_simple_g2_weighted"] > 1.15 * exact
    assert all(p.grad is None for p in model.parameters())          # the probe leaves .grad alone


def test_micro_batches_measure_what_a_probe_measures(problem, tmp_path):
    model, x, y, _ = problem
    m, p = NoiseScaleMonitor(64, num_examples=N, out=tmp_path / "noise.csv"), NoiseScaleMonitor(num_examples=N)
    gen = torch.Generator().manual_seed(3)
    for step in range(3):
        idx = torch.randperm(N, generator=gen)[:64]
        model.zero_grad()
        for c in range(4):                         # gradient accumulation: 4 micro-batches of 16
            sl = idx[c * 16:(c + 1) * 16]
            (F.cross_entropy(model(x[sl]), y[sl]) / 4).backward()
            m.micro_batch(model, 16, loss_scale=1 / 4)
        a = m.step()
        b = p.probe(model, F.cross_entropy, x[idx], y[idx], 16)
        for k in ("g2_small", "g2_big", "g2", "trace"):
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-12), k
    s = m.close()
    assert (tmp_path / "noise.csv").read_text().count("\n") == 4 and (tmp_path / "noise.json").exists()
    assert s["measurements"] == 3 and math.isfinite(s["b_simple_g2_weighted"]) and math.isfinite(s["b_simple_time_average"])
    with pytest.raises(FeedwiseError, match="at least two micro-batches"):
        m.micro_batch(model, 16, 1.0)
        m.step()


def _ddp_rank(rank, port, path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    from feedwise.parallel.launch import leave_group

    def measure():   # DDP and the monitor live only in here: gone before the group is destroyed
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(N, D, generator=g), torch.randint(0, K, (N,), generator=g)
        torch.manual_seed(0)
        model = torch.nn.Linear(D, K)
        ddp = DistributedDataParallel(model)
        monitor = NoiseScaleMonitor(64, num_examples=N).attach(ddp)
        idx = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:64]
        mine = idx[rank * 32:(rank + 1) * 32]                  # this rank's half of the global batch
        loss = F.cross_entropy(ddp(x[mine]), y[mine])
        loss.backward()
        return monitor.step()

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        row = measure()
        if rank == 0:
            torch.save(row, path)
    finally:
        leave_group()   # garbage collected, then a barrier: a rank leaving while the other still talks can abort


def test_under_ddp_the_ranks_gradients_are_the_two_batch_sizes(problem, tmp_path):
    """2-process DDP: each rank's local gradient is the small batch, the all-reduced one the big
    batch; the monitor reads both in DDP's own all-reduce and measures what a probe of the same
    global batch cut into the ranks' halves measures."""
    import torch.multiprocessing as mp

    from feedwise.parallel.launch import free_port

    model, x, y, _ = problem
    path = tmp_path / "row.pt"
    mp.start_processes(_ddp_rank, args=(free_port(), str(path)), nprocs=2, start_method="spawn")
    row = torch.load(path)
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:64]
    ref = NoiseScaleMonitor(num_examples=N).probe(model, F.cross_entropy, x[idx], y[idx], 32)
    assert row["b_small"] == 32 and row["b_big"] == 64
    for k in ("g2_small", "g2_big", "g2", "trace"):
        assert row[k] == pytest.approx(ref[k], rel=1e-5), k
