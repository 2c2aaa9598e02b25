"""The DDP noise-scale monitor. With every=1 a communication hook sends each rank's local squared norm
inside the last bucket's all-reduce (several buckets, or a last bucket too big to copy: a separate small
all-reduce); with every>1 a measured step skips DDP's sync and the monitor all-reduces it. Either way the
measurement is the same as a probe of the same global batch, and the gradients are DDP's."""

import pytest
import torch
import torch.nn.functional as F

from feedwise.monitor import NoiseScaleMonitor

N, D, K = 256, 10, 3


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D, generator=g), torch.randint(0, K, (N,), generator=g)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(D, 700), torch.nn.ReLU(), torch.nn.Linear(700, 700), torch.nn.ReLU(),
                               torch.nn.Linear(700, K))   # ~2 MB of parameters: several 1 MB buckets


def _rank(rank, port, pack_limit, path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import feedwise.monitor as mon

    torch.set_num_threads(1)
    mon.PACK_LIMIT = pack_limit
    from feedwise.parallel.launch import leave_group

    def measure():   # DDP and the monitor live only in here: gone before the group is destroyed
        x, y = _data()
        ddp = DistributedDataParallel(_model(), bucket_cap_mb=1)
        monitor = mon.NoiseScaleMonitor(64, num_examples=N).attach(ddp)
        idx = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:64]
        mine = idx[rank * 32:(rank + 1) * 32]
        F.cross_entropy(ddp(x[mine]), y[mine]).backward()   # DDP's first iteration uses one bucket,
        monitor.step()                                       # then rebuilds them by bucket_cap_mb
        ddp.zero_grad(set_to_none=True)
        F.cross_entropy(ddp(x[mine]), y[mine]).backward()
        buckets, packed = monitor._buckets, monitor._packed is not None
        return {"row": monitor.step(), "buckets": buckets, "packed": packed}

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        got = measure()
        if rank == 0:
            torch.save(got, path)
    finally:
        leave_group()   # garbage collected, then a barrier: a rank leaving while the other still talks can abort


@pytest.mark.parametrize("pack_limit", [1 << 22, 0])
def test_every_bucket_path_measures_what_a_probe_measures(tmp_path, pack_limit):
    import torch.multiprocessing as mp

    from feedwise.parallel.launch import free_port

    path = tmp_path / "row.pt"
    mp.start_processes(_rank, args=(free_port(), pack_limit, str(path)), nprocs=2, start_method="spawn")
    got = torch.load(path)
    assert got["buckets"] >= 2 and got["packed"] == (pack_limit > 0)
    x, y = _data()
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:64]
    ref = NoiseScaleMonitor(num_examples=N).probe(_model(), F.cross_entropy, x[idx], y[idx], 32)
    for k in ("g2_small", "g2_big", "g2", "trace"):
        assert got["row"][k] == pytest.approx(ref[k], rel=1e-4), k


def _rank_every(rank, port, path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    from feedwise.parallel.launch import leave_group

    def measure():   # DDP and the monitor live only in here: gone before the group is destroyed
        x, y = _data()
        ddp = DistributedDataParallel(_model())
        monitor = NoiseScaleMonitor(64, num_examples=N, every=3).attach(ddp)
        idx = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:64]
        mine = idx[rank * 32:(rank + 1) * 32]
        rows, grads = [], []
        for _ in range(5):
            ddp.zero_grad(set_to_none=True)
            F.cross_entropy(ddp(x[mine]), y[mine]).backward()
            rows.append(monitor.step())
            assert monitor.steps == len(rows)
            grads.append([p.grad.clone() for p in ddp.parameters()])
        return {"rows": rows, "grads": grads}

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        got = measure()
        if rank == 0:
            torch.save(got, path)
    finally:
        leave_group()   # garbage collected, then a barrier: a rank leaving while the other still talks can abort


def test_every_k_measures_one_step_in_k_and_every_step_gets_the_all_reduced_gradient(tmp_path):
    import torch.multiprocessing as mp

    from feedwise.parallel.launch import free_port

    path = tmp_path / "rows.pt"
    mp.start_processes(_rank_every, args=(free_port(), str(path)), nprocs=2, start_method="spawn")
    got = torch.load(path)
    assert [r is not None for r in got["rows"]] == [True, False, False, True, False]
    x, y = _data()
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(5))[:64]
    model = _model()
    ref = NoiseScaleMonitor(num_examples=N).probe(model, F.cross_entropy, x[idx], y[idx], 32)
    for row in (got["rows"][0], got["rows"][3]):
        for k in ("g2_small", "g2_big"):
            assert row[k] == pytest.approx(ref[k], rel=1e-4), k
    # every step, measured (the monitor's own all-reduce) or not (DDP's), leaves the same gradient:
    # the mean of the two halves' gradients, i.e. the global batch's
    F.cross_entropy(model(x[idx]), y[idx]).backward()
    for step_grads in got["grads"]:
        for g, p in zip(step_grads, model.parameters()):
            assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-6)
