"""Batched closed-loop evaluation: environments in lockstep worker processes with shared model calls give the
outcomes of one-at-a-time evaluation for the same seeds, and skipping the images no policy reads changes nothing."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from tests.conftest import small_trained_model
from wam.compute import cpu_threads
from wam.data.lerobot import LeRobotDataset
from wam.eval.config import EvalConfig
from wam.eval.runner import run_closed_loop

pytestmark = pytest.mark.sim
TASKS = "button-press-topdown-v3,drawer-open-v3"


@pytest.fixture(scope="module")
def runs(vision_data, tmp_path_factory):
    """Briefly trained small models of a chunked, a streaming and a planning preset."""
    ds = LeRobotDataset.load(vision_data)
    root, out = tmp_path_factory.mktemp("lockstep"), {}
    for name in ("fast-wam", "gr-1", "world-model-mpc"):
        small_trained_model(ds, name, steps=20).save(root / name / "model")
        out[name] = root / name
    return out


def outcomes(info: dict) -> list[tuple]:
    return [(e["task"], e["seed"], e["success"], e["steps"], e["model_calls"]) for e in info["per_episode"]]


@pytest.mark.parametrize("name, shared", [("fast-wam", True), ("world-model-mpc", True), ("gr-1", False)])
def test_lockstep_evaluation_gives_the_one_at_a_time_outcomes(runs, tmp_path, name, shared):
    infos = {envs: run_closed_loop(EvalConfig(run=runs[name], tasks=TASKS, episodes=3, max_steps=40, envs=envs,
                                              out=tmp_path / f"envs{envs}"))
             for envs in (1, 4)}
    assert outcomes(infos[1]) == outcomes(infos[4])
    # Batched matrix products round differently in the last bits: the rewards agree to float precision.
    np.testing.assert_allclose([e["sum_reward"] for e in infos[4]["per_episode"]],
                               [e["sum_reward"] for e in infos[1]["per_episode"]], rtol=1e-5)
    assert infos[1]["budget"]["episodes_per_call"] == 1.0
    # Streaming policies keep a KV cache per episode: they step in lockstep but call the model one at a time.
    assert (infos[4]["budget"]["episodes_per_call"] > 1) == shared
    # A shared call takes longer than one robot's: the budget's latency then comes from an episode timed alone.
    assert ("latency_timed_alone" in infos[4]["budget"]) == shared
    assert "latency_timed_alone" not in infos[1]["budget"]
    if shared:
        timed = infos[4]["budget"]["latency_timed_alone"]
        assert (timed["task"], timed["seed"]) == (infos[4]["per_episode"][0]["task"], infos[4]["per_episode"][0]["seed"])
        assert timed["model_calls"] == infos[1]["per_episode"][0]["model_calls"]
    assert infos[4]["config"]["envs"] == 4


def test_a_batched_evaluation_may_leave_the_timing_to_its_caller(runs, tmp_path):
    """``wam bench`` times every preset in its own pass, so its evaluations skip the episode timed alone."""
    info = run_closed_loop(EvalConfig(run=runs["fast-wam"], tasks=TASKS, episodes=2, max_steps=20, envs=4,
                                      time_alone=False, out=tmp_path))
    assert info["budget"]["episodes_per_call"] > 1 and "latency_timed_alone" not in info["budget"]


def test_a_planner_that_searches_around_its_last_plan_runs_one_episode_at_a_time(runs, tmp_path):
    stderr = io.StringIO()
    cfg = EvalConfig(run=runs["world-model-mpc"], tasks=TASKS, episodes=2, max_steps=10, envs=4, out=tmp_path)
    cfg.planner.proposal = "noise"
    with contextlib.redirect_stderr(stderr):
        info = run_closed_loop(cfg)
    assert "one episode at a time instead of --envs 4" in stderr.getvalue()
    assert info["budget"]["episodes_per_call"] == 1.0


def test_skipping_unread_images_changes_no_outcome(runs, tmp_path):
    """Recorded episodes render every frame; the others only the frames the chunked policy will read."""
    common = dict(run=runs["fast-wam"], tasks=TASKS, episodes=2, max_steps=40, envs=1)
    rendered = run_closed_loop(EvalConfig(**common, video=2, out=tmp_path / "all"))
    skipped = run_closed_loop(EvalConfig(**common, video=0, out=tmp_path / "skip"))
    assert outcomes(rendered) == outcomes(skipped)
    assert [e["sum_reward"] for e in rendered["per_episode"]] == [e["sum_reward"] for e in skipped["per_episode"]]


def test_a_dead_environment_worker_is_one_clear_error(runs, tmp_path):
    from wam.data.collect import EVAL_SEED_BASE
    from wam.eval.lockstep import EnvironmentWorkerError, LockstepRunner
    from wam.eval.subject import load_for_eval

    cfg = EvalConfig(run=runs["fast-wam"], tasks="drawer-open-v3", episodes=2, max_steps=20, envs=2, out=tmp_path)
    runner = LockstepRunner(cfg, *load_for_eval(cfg, runs["fast-wam"] / "model"), envs=2)
    try:
        runner.workers._processes[1].kill()
        runner.workers._processes[1].join()
        with pytest.raises(EnvironmentWorkerError, match=r"environment worker 1 died .* --envs 1"):
            runner.run([("drawer-open-v3", j, EVAL_SEED_BASE + j) for j in range(2)])
    finally:
        runner.close()


def test_an_evaluation_gives_the_process_its_thread_count_back(runs, tmp_path):
    """Evaluation calls run at one thread; the training a bench runs next must get the process's count, not that one."""
    with cpu_threads(2):
        run_closed_loop(EvalConfig(run=runs["fast-wam"], tasks=TASKS, episodes=1, max_steps=5, envs=1, threads=1,
                                   out=tmp_path))
        assert torch.get_num_threads() == 2
