"""Episodes fanned out to Ray workers: ``wam eval --ray`` (a local cluster) or ``--ray-address`` (an existing one).

Each worker is a Ray actor holding one ``EpisodeRunner``: the model (sent as its two files, so workers on other
machines need no shared filesystem), the deployment policy and one simulator per task. Episodes reseed the policy
from their own seed, so the results equal a single-process run's; videos come back as bytes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from wam.model import CONFIG_NAME, WEIGHTS_NAME


def connect(address: str | None, workers: int | None) -> int:
    """Join the Ray cluster at ``address`` (None: start a local one); returns how many workers to run."""
    import ray

    if not ray.is_initialized():
        env = {"env_vars": {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), runtime_env=env, include_dashboard=False,
                     log_to_driver=False)
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


class _Worker:
    """The actor body: rebuilds the model from its files, then runs episodes on request."""

    def __init__(self, cfg: Any, files: dict[str, bytes]):
        import torch

        from wam.eval.runner import EpisodeRunner, load_for_eval

        torch.set_num_threads(cfg.threads)
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
            model = load_for_eval(cfg, Path(tmp))
        self.runner = EpisodeRunner(cfg, model)

    def episode(self, task: str, j: int, seed: int) -> dict[str, Any]:
        return self.runner.episode(task, j, seed)


def ray_episodes(cfg: Any, jobs: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Run ``jobs`` (task, j, seed) on Ray workers; the records come back in job order."""
    import ray
    from ray.util import ActorPool

    n = min(connect(cfg.ray_address, cfg.ray_workers), len(jobs))
    model_dir = Path(cfg.run) / "model"
    files = ray.put({name: (model_dir / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)})
    actor = ray.remote(num_cpus=1)(_Worker)
    pool = ActorPool([actor.remote(cfg, files) for _ in range(n)])
    records: list[dict[str, Any] | None] = [None] * len(jobs)
    results = pool.map_unordered(lambda a, job: a.episode.remote(*job), jobs)
    with tqdm(total=len(jobs), desc=f"eval ({n} ray workers)", unit="ep") as bar:
        for record in results:
            records[jobs.index((record["task"], record["j"], record["seed"]))] = record
            bar.update()
    return records  # type: ignore[return-value]
