"""Accuracy at budget: the cost side of an evaluation, measured in the same run as the success rate.

Cost model (DESIGN.md section 1): chunked closed-loop deployment with K actions per call costs
``C = ceil(T / K) * N_fwd(K)`` and keeps up with a robot controlled at ``f_ctrl`` only if ``N_fwd(K) / K < 1 / f_ctrl``.
We test feasibility with the 95th-percentile call latency, so a model that usually keeps up but stalls one call
in twenty is reported as infeasible.
"""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch


def latency_block(call_latencies: list[float], actions_executed: int, n_action_steps: int,
                  control_hz: float, episode_calls: list[int] | None = None,
                  episode_steps: list[int] | None = None) -> dict[str, Any]:
    """Latency per call and per executed action, effective control rate, the chunked feasibility test, and the
    cost model per episode: calls, measured model time, and ``C = ceil(T / K) * N_fwd(K)`` predicted from the
    median call. ``n_action_steps`` is the fewest actions a call may have to cover (K; 1 for single-step; the
    first check for adaptive chunking, whose predicted cost is therefore an upper bound)."""
    calls = np.asarray(call_latencies, dtype=np.float64)
    if calls.size == 0:
        raise ValueError("no model call was timed; did the evaluation run any step?")
    per_action = calls.sum() / max(actions_executed, 1)
    p50, p95 = float(np.percentile(calls, 50)), float(np.percentile(calls, 95))
    block = {
        "model_calls": int(calls.size),
        "actions_executed": int(actions_executed),
        "latency_per_call_ms": {"p50": 1e3 * p50, "p95": 1e3 * p95,
                                "max": 1e3 * float(calls.max()), "mean": 1e3 * float(calls.mean())},
        "latency_per_action_ms": 1e3 * per_action,
        "effective_control_hz": 1.0 / per_action if per_action > 0 else float("inf"),
        "control_hz": control_hz,
        "n_action_steps": n_action_steps,
        "feasible_at_control_hz": bool(p95 / n_action_steps < 1.0 / control_hz),
        "feasibility_margin": (1.0 / control_hz) / (p95 / n_action_steps),
    }
    if episode_calls and episode_steps:
        steps = float(np.mean(episode_steps))
        block["cost_model"] = {
            "episode_steps_mean": steps,
            "calls_per_episode_mean": float(np.mean(episode_calls)),
            "model_time_per_episode_s": float(calls.sum()) / len(episode_calls),
            "predicted_model_time_per_episode_s": float(np.mean([np.ceil(t / n_action_steps) for t in episode_steps]))
            * p50,
        }
    return block


def process_peak_memory_mb() -> float:
    """Peak resident memory of this process so far, including anything it did before the evaluation."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class MemoryMeter:
    """The highest resident memory seen at ``sample()`` calls: the evaluation's own peak, even in a process that
    trained a model first (the kernel's high-water mark cannot be reset)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak_mb = 0.0

    def sample(self) -> None:
        self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """What the numbers were measured on: CPU model and cores, torch version, device."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": str(device)}
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
