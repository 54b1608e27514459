"""`wam bench` under a protocol with one model per task (the references' setup, ``--protocol 10-demos-per-task``)
at --quick scale: each task trained alone, in parallel processes with --train-only, evaluated, timed, recorded,
and the group's row joined and rebuilt from the records."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from wam.cli import main

pytestmark = [pytest.mark.sim, pytest.mark.e2e]


def test_a_protocol_with_one_model_per_task_trains_each_task_alone_and_joins_them(tmp_path, monkeypatch, capsys):
    """The references' setup: each task of the group gets its own demonstrations, model, evaluation and record; the
    group's row joins them (training times added up), is timed on the first task's model as soon as it is evaluated
    (a bench stopped before its end leaves whole records), and is rebuilt from the records once the runs are gone.
    The generalization grid, which runs on one model per group, is refused."""
    import subprocess
    import sys

    from wam.eval import protocols

    with pytest.raises(ValueError, match="not one per task"):
        protocols.Protocol(name="both", suite="metaworld", description="", groups=("quick",), demos=5, episodes=2,
                           max_steps=60, steps=20, seeds=(0,), model_per_task=True, shift_cell_episodes=2)
    tiny = protocols.Protocol(name="tiny-per-task", suite="metaworld", description="two easy tasks, one model each",
                              groups=("quick",), demos=5, episodes=2, max_steps=60, steps=20, seeds=(0,),
                              model_per_task=True)
    monkeypatch.setitem(protocols.PROTOCOLS, tiny.name, tiny)
    out, results = tmp_path / "out", tmp_path / "results"
    command = ["bench", "--protocol", tiny.name, "--quick", "--presets", "vla", "--envs", "1", "--out", str(out),
               "--results", str(results)]
    tasks = ["button-press-topdown-v3", "drawer-close-v3"]
    # --train-only: both tasks' models trained at once, each in its own process with its own log, nothing evaluated;
    # the bench then finds them trained as they are
    assert main([*command, "--train-only", "--train-jobs", "2"]) == 0
    trained = {t: (out / f"quick/{t}/vla/seed-0/run/train_summary.json").read_text() for t in tasks}
    assert all("vla" in (out / f"quick/{t}/vla/seed-0/train.log").read_text() for t in tasks)
    assert not (out / "quick" / tasks[0] / "vla/seed-0/eval").exists() and not results.exists()
    import wam.eval.bench as bench_module

    def stop(*args, **kwargs):
        raise RuntimeError("stopped")

    with monkeypatch.context() as stopped:  # stopped after every run, before the rows: the records are whole
        stopped.setattr(bench_module, "protocol_row", stop)
        with pytest.raises(RuntimeError, match="stopped"):
            main(command)
    records = {t: json.loads(gzip.decompress((results / f"records/quick/vla/{t}/seed-0.json.gz").read_bytes()))
               for t in tasks}
    assert records[tasks[0]]["timing"] is not None and records[tasks[1]]["timing"] is None  # timed on the first
    assert main(command) == 0
    group = json.loads((results / "leaderboard.json").read_text())["groups"]["quick"]
    (r,) = group["rows"]
    assert group["tasks"] == tasks and r["models_per_seed"] == 2 and r["episodes"] == 2 * 2
    assert set(r["per_task"]) == set(tasks) and group["expert"]["per_task"].keys() == set(tasks)
    summaries = [json.loads(trained[t]) for t in tasks]
    assert trained == {t: (out / f"quick/{t}/vla/seed-0/run/train_summary.json").read_text() for t in tasks}
    assert r["train_time_s"] == pytest.approx(sum(s["train_time_s"] + s.get("substrate_prepare_time_s", 0.0)
                                                  for s in summaries))
    for task in tasks:  # each model trained on its own task's demonstrations only
        config = json.loads((out / f"quick/{task}/vla/seed-0/run/train_config.json").read_text())
        data = json.loads((Path(config["data"]) / "meta/info.json").read_text())
        assert config["data"] == str(out / f"quick/{task}/data") and data["total_episodes"] == 5
        info = json.loads((out / f"quick/{task}/vla/seed-0/eval/{task}/eval_info.json").read_text())
        assert r["per_task"][task] == info["aggregated"]["pc_success"] / 100
    assert r["latency_per_call_ms_p50"] == records[tasks[0]]["timing"]["latency_per_call_ms"]["p50"]
    script = Path(__file__).parents[1] / "benchmarks" / "fit_gap.py"
    subprocess.run([sys.executable, str(script), "--bench", str(out), "--out", str(tmp_path / "gap.json")],
                   check=True, capture_output=True)
    assert [g["entry"] for g in json.loads((tmp_path / "gap.json").read_text())["rows"]] == [f"{t}/vla" for t in tasks]
    capsys.readouterr()
    for task in tasks:
        shutil.rmtree(out / f"quick/{task}/vla")
    assert main(command) == 0
    assert capsys.readouterr().out.count("taken from") == 2
    again = json.loads((results / "leaderboard.json").read_text())["groups"]["quick"]["rows"][0]
    for key in ("success", "per_task", "failures", "offline", "train_time_s", "models_per_seed",
                "latency_per_call_ms_p50"):
        assert again[key] == r[key], key
