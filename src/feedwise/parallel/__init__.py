"""Scale-out: training one workload on several processes.

- :mod:`feedwise.parallel.ddp` — synchronous data parallelism with torch.distributed
  ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA), launched by ``torchrun`` or by
  spawning local processes; compute and all-reduce time measured separately.
- :mod:`feedwise.parallel.local_sgd` — local SGD: independent steps, parameters averaged
  every ``H`` steps.
- :mod:`feedwise.parallel.hogwild` — asynchronous SGD on shared-memory parameters.
- :mod:`feedwise.parallel.perfmodel` — the α–β / Amdahl model of time-to-result (pure maths;
  the report may import it, it imports no engine).

Each is a :class:`feedwise.engine.Strategy` of the engine's one training loop; what they share
(shards of the global batch, gathered observations, meeting at evaluations) is in
:mod:`feedwise.parallel.sharded`, one rank's set-up in :mod:`feedwise.parallel.worker`, process
launching in :mod:`feedwise.parallel.launch` and :mod:`feedwise.parallel.run`. Nothing heavy is
imported here.
"""

MODES = ("sync", "local-sgd", "hogwild")
