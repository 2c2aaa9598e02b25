"""`feedwise demo`: small but real runs on the embedded mnist1d workload, then where to look."""

from __future__ import annotations

from pathlib import Path

from feedwise.engine import TrainConfig
from feedwise.progress import say
from feedwise.studies.train import TrainRequest, train_study
from feedwise.workloads import get_workload


def run_demo(out: str = "runs/demo", threads: int | None = None, device: str = "auto") -> str:
    w = get_workload("mnist1d-mlp")
    root = Path(out)
    say(f"[bold]feedwise demo[/bold]: training {w.name} to validation error < {w.target}")
    cfg = TrainConfig(batch_size=w.batch_size, lr=w.lr, optimizer="momentum", max_steps=w.max_steps,
                      eval_every=w.eval_every, target=w.target)
    rec, _ = train_study(TrainRequest(workload=w.name, config=cfg), str(root / "train"), threads=threads, device=device)
    say(f"steps_to_result: {rec.get('steps_to_result')}  status: {rec['status']}  test_error: {rec.get('test_error')}")
    return str(root / "train" / "trials" / "0" / "trial.json")
