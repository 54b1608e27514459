"""Ray fan-out for episode jobs: ``wam collect/eval --ray`` (a local cluster) or ``--ray-address`` (an existing one).

A job list is spread over Ray actors, each built once (a model, simulators) and then fed jobs; results come back
in job order. Workers return bytes rather than write files, so nodes need no shared filesystem; Ray moves the
arguments and results between our own processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any


def connect(address: str | None, workers: int | None) -> int:
    """Join the Ray cluster at ``address`` (None: start a local one); returns how many workers to run."""
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'wam[ray]' (or pip install ray)") from None

    if workers is not None and workers < 1:
        raise ValueError(f"--ray-workers must be at least 1, got {workers}")
    if not ray.is_initialized():
        env = {"env_vars": {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), runtime_env=env, include_dashboard=False,
                     log_to_driver=False)
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def fan_out(worker: type, init_args: tuple, jobs: list[tuple], address: str | None,
            workers: int | None) -> Iterator[Any]:
    """``worker(*init_args).run(*job)`` for every job, on Ray actors (one CPU each); yields the results in job
    order as they arrive, so the caller can keep each one before the next."""
    n = min(connect(address, workers), len(jobs))
    import ray
    from ray.util import ActorPool

    shared = [ray.put(a) for a in init_args]  # sent once, not once per actor
    actor = ray.remote(num_cpus=1)(worker)
    pool = ActorPool([actor.remote(*shared) for _ in range(n)])
    yield from pool.map(lambda a, job: a.run.remote(*job), jobs)
