"""`wam bench` end to end at --quick scale: two presets trained, evaluated closed-loop and screened, resumed
without redoing anything, and the HTML report rendered in headless Chromium with its table, plots and videos."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import headless_chromium
from wam.cli import main
from wam.eval.leaderboard import central_claim, future_at_deployment, pareto_front
from wam.options import OptionError

pytestmark = [pytest.mark.sim, pytest.mark.e2e]


def row(preset: str, success: float, latency: float, philosophy: str = "Latent-Only",
        future: str = "skipped", episodes: int = 400) -> dict:
    return {"preset": preset, "success": success, "latency_per_action_ms": latency, "philosophy": philosophy,
            "future_at_deployment": future, "episodes": episodes}


def test_pareto_front_and_the_central_claim():
    rows = [row("a", 0.9, 10.0, "Render-and-Decode"), row("b", 0.9, 2.0), row("c", 0.5, 1.0), row("d", 0.4, 5.0)]
    assert pareto_front(rows) == ["b", "c"]
    claim = central_claim(rows)
    assert (claim["render_and_decode"], claim["lean"], claim["latency_ratio"]) == ("a", "b", 5.0)
    assert claim["lean_matches"] and claim["matching"] == ["b"]
    assert claim["success_difference_se"] == pytest.approx((2 * 0.9 * 0.1 / 400) ** 0.5)
    assert claim["generating"] is None  # no render-and-decode preset generates its future when it acts
    claim = central_claim(rows + [row("e", 0.8, 20.0, "Render-and-Decode", future="generated")])
    assert claim["render_and_decode"] == "a"
    assert (claim["generating"]["render_and_decode"], claim["generating"]["latency_ratio"]) == ("e", 10.0)
    assert claim["generating"]["success_difference"] == pytest.approx(0.1)
    assert central_claim([row("b", 0.9, 2.0)]) is None  # nothing to compare with


def test_the_central_claim_compares_the_fastest_lean_preset_within_noise():
    render = row("r", 0.98, 40.0, "Render-and-Decode", future="generated")
    # 0.97 is within one standard error (about 1.1 points over 400 episodes each), 0.95 is not.
    claim = central_claim([render, row("best", 0.985, 16.0), row("fast", 0.97, 0.5), row("fastest", 0.95, 0.1)])
    assert (claim["lean"], claim["matching"], claim["latency_ratio"]) == ("fast", ["best", "fast"], 80.0)
    claim = central_claim([render, row("fast", 0.97, 0.5, episodes=40000), row("fastest", 0.95, 0.1)])
    assert not claim["lean_matches"] and claim["lean"] == "fast"  # none matches: the most successful is compared


def test_future_at_deployment_says_what_the_latency_pays_for():
    def model(offsets=(8, 16), at_inference="skip", planner=None) -> dict:
        return {"future_offsets": list(offsets), "future_at_inference": at_inference, "planner": planner}

    assert future_at_deployment(model(offsets=())) == "none"
    assert future_at_deployment(model()) == "skipped"
    assert future_at_deployment(model(at_inference="predict")) == "generated"
    assert future_at_deployment(model(planner={"planner": "cem"})) == "planned"


def test_each_group_is_timed_on_its_first_seed_and_headline_entries_run_at_every_seed(tmp_path):
    from wam.eval.bench import BenchConfig

    cfg = BenchConfig(protocol="10-demos", groups=("hard", "very-hard"), seeds=(3, 4), presets=("vla", "flare"),
                      headline=("flare",), out=tmp_path).resolved()
    assert [(c.group, c.seed) for c in cfg.cells()] == [("hard", 3), ("hard", 4), ("very-hard", 3), ("very-hard", 4)]
    assert [(c.group, c.seed) for c in cfg.timed_cells()] == [("hard", 3), ("very-hard", 3)]
    assert [cfg.entries_of(c) for c in cfg.cells()] == [["vla", "flare"], ["flare"]] * 2
    per_task = BenchConfig(protocol="10-demos-per-task", groups=("very-hard",), seeds=(0, 1), presets=("vla",),
                           out=tmp_path).resolved()
    assert [(c.name, c.seed) for c in per_task.timed_cells()] == [("very-hard/disassemble-v3", 0)]


def test_unknown_preset_is_refused(tmp_path, capsys):
    assert main(["bench", "--presets", "gato", "--out", str(tmp_path)]) == 2
    assert "unknown preset(s) gato" in capsys.readouterr().err
    assert main(["bench", "--presets", "vla", "--headline", "vla", "--out", str(tmp_path / "none")]) == 2
    assert "--groups, --seeds and --headline choose among a protocol's" in capsys.readouterr().err
    assert main(["bench", "--presets", "vla", "--train-jobs", "2", "--out", str(tmp_path / "none")]) == 2
    assert "pass --train-only too" in capsys.readouterr().err
    assert main(["bench", "--presets", "vla", "--eval-jobs", "2", "--ray", "--out", str(tmp_path / "none")]) == 2
    assert "--eval-jobs runs evaluations in processes on this machine and --ray" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    args = ["bench", "--quick", "--presets", "vla", "fast-wam", "--out", str(root / "out"),
            "--results", str(root / "results"), "--envs", "1"]  # one episode per task: no worker processes
    assert main(args) == 0
    return root, args


def test_bench_writes_a_leaderboard_and_resumes(bench):
    root, args = bench
    board = json.loads((root / "results/leaderboard.json").read_text())
    assert {r["preset"] for r in board["rows"]} == {"vla", "fast-wam"}
    for r in board["rows"]:
        assert set(r["per_task"]) == {"button-press-topdown-v3", "drawer-close-v3"} and 0 <= r["success"] <= 1
        assert r["latency_per_action_ms"] > 0 and r["parameters"] > 0 and r["train_steps"] == 20
        assert "action_mse_executed" in r["offline"]
        assert sum(r["failures"].values()) == round(r["episodes"] * (1 - r["success"]))  # every failure is tagged
        assert (r["sweep"] is None) == (r["preset"] == "vla")  # vla is not among the swept presets
        properties = r["properties"]
        assert properties["causality_leak"] == 0.0 and 0 <= properties["executable_fraction"] <= 1
        # every factor at its middle level but displacement, which cannot shift these tasks (nothing lies loose)
        probed = {"camera=medium", "lighting=medium", "colour=medium", "distractors=medium", "placement=medium"}
        assert set(properties["generalization"]["success"]) == {"none", *probed}
        assert set(properties["generalization"]["shifts"]) == probed
    assert {r["preset"]: r["future_at_deployment"] for r in board["rows"]} == {"vla": "none", "fast-wam": "skipped"}
    for preset in ("vla", "fast-wam"):  # latency comes from this run's timing pass, not from the evaluations
        timing = json.loads((root / f"out/{preset}/timing.json").read_text())
        assert timing["model_calls"] >= 10 and len(timing["loadavg_before"]) == 3
        row = next(r for r in board["rows"] if r["preset"] == preset)
        assert row["latency_per_call_ms_p50"] == timing["latency_per_call_ms"]["p50"]
        assert row["timing_loadavg"] == timing["loadavg_before"][0]
    model = root / "out/fast-wam/run/model/model.safetensors"
    evaluated = root / "out/fast-wam/eval/drawer-close-v3/eval_info.json"
    stamps = model.stat().st_mtime_ns, evaluated.stat().st_mtime_ns
    assert main(args) == 0  # everything is cached: nothing is trained or evaluated again
    assert (model.stat().st_mtime_ns, evaluated.stat().st_mtime_ns) == stamps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for row in board["rows"]:  # TensorBoard's own reader: training curves and the evaluation beside them
        runs = root / "out" / row["preset"] / "run" / "tensorboard"
        training, evaluation = EventAccumulator(str(runs)), EventAccumulator(str(runs / "eval"))
        training.Reload(), evaluation.Reload()
        assert [e.step for e in training.Scalars("train/loss")][-1] == 20
        assert [(e.step, round(e.value, 6)) for e in evaluation.Scalars("eval/success")] == [(20, round(row["success"], 6))]
        assert {f"eval/success/{t}" for t in row["per_task"]} <= set(evaluation.Tags()["scalars"])


def test_bench_fans_evaluations_out_to_ray_with_the_same_outcomes(bench):
    pytest.importorskip("ray")
    root, _ = bench
    evaluated = root / "out/vla/eval/drawer-close-v3/eval_info.json"
    before = json.loads(evaluated.read_text())
    evaluated.unlink()  # only this task is evaluated again, on two Ray workers
    assert main(["bench", "--quick", "--presets", "vla", "--out", str(root / "out"), "--results",
                 str(root / "results-ray"), "--ray", "--ray-workers", "2"]) == 0
    after = json.loads(evaluated.read_text())
    assert after["config"]["ray"] and not before["config"]["ray"]
    outcome = lambda info: [(e["seed"], e["success"], e["steps"]) for e in info["per_episode"]]  # noqa: E731
    assert outcome(after) == outcome(before)
    # The bench evaluated in lockstep with batched calls, whose products round differently in the last bits.
    reward = lambda info: [e["sum_reward"] for e in info["per_episode"]]  # noqa: E731
    assert reward(after) == pytest.approx(reward(before), rel=1e-5)


def test_bench_runs_evaluations_in_processes_with_the_same_outcomes(bench, tmp_path, capsys):
    root, _ = bench
    shutil.copytree(root / "out", tmp_path / "out")  # (other tests evaluate the bench's folder again, with Ray)
    folder = tmp_path / "out/vla"
    paths = [folder / "eval/button-press-topdown-v3/eval_info.json", folder / "eval/drawer-close-v3/eval_info.json",
             folder / "offline/offline_info.json"]

    def evaluated(jobs: str) -> dict[Path, dict]:  # the two tasks and the screens evaluated again
        for path in paths:
            path.unlink(missing_ok=True)
        assert main(["bench", "--quick", "--presets", "vla", "--envs", "1", "--out", str(tmp_path / "out"),
                     "--results", str(tmp_path / f"results-{jobs}"), "--eval-jobs", jobs]) == 0
        return {path: json.loads(path.read_text()) for path in paths}

    before = evaluated("1")
    capsys.readouterr()
    after = evaluated("2")  # two processes at a time
    printed = capsys.readouterr().out
    without_time = lambda episodes: [{k: v for k, v in e.items() if k != "time_s"} for e in episodes]  # noqa: E731
    for path in paths:
        assert after[path]["config"] == before[path]["config"]
        name = "offline screens" if path.parent.name == "offline" else path.parent.name
        assert f"evaluated {name} (log: {path.parent / 'eval.log'})" in printed
        if "per_episode" in before[path]:  # the same seeds on one thread each: the same outcomes to the bit
            assert "eval" in (path.parent / "eval.log").read_text()  # its progress bar went to its own log
            assert without_time(after[path]["per_episode"]) == without_time(before[path]["per_episode"])
        else:
            assert after[path]["offline"] == before[path]["offline"]


def test_bench_table_prints_the_leaderboard_as_markdown(bench):
    import subprocess
    import sys

    root, _ = bench
    script = Path(__file__).parents[1] / "benchmarks" / "bench_table.py"
    out = subprocess.run([sys.executable, str(script), str(root / "results")], capture_output=True, text=True,
                         check=True).stdout
    assert "| `vla` | Policy (no world model) | none |" in out and "| `fast-wam` |" in out
    assert "not answerable" in out  # neither preset is render-and-decode


def test_bench_refuses_to_mix_training_settings(bench, capsys):
    root, args = bench  # a finished run whose recorded settings differ from the asked ones is not reused
    settings = root / "out/vla/bench_train.json"
    saved = settings.read_text()
    settings.write_text(json.dumps({**json.loads(saved), "steps": 999}))
    try:
        assert main(args) == 2
        assert "was trained with" in capsys.readouterr().err
    finally:
        settings.write_text(saved)


@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium and chromium-driver "
                    "(scripts/test.sh installs them)")
def test_report_renders_in_headless_chromium(bench):
    root, _ = bench
    driver = headless_chromium("--autoplay-policy=no-user-gesture-required")
    try:
        driver.get((root / "results/report.html").as_uri())
        assert driver.title.startswith("WAM-Bench")
        for table in ("leaderboard", "failures", "screens", "properties"):
            assert len(driver.find_elements("css selector", f"#{table} tr")) >= 1 + 2, table  # header + presets
        images = driver.find_elements("css selector", "img")
        assert {i.get_attribute("id") for i in images} >= {"pareto", "training"}
        assert len(driver.find_elements("css selector", "img.sweep")) == 1  # fast-wam's fidelity-latency curve
        for image in images:
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image), \
                image.get_attribute("src")
        videos = driver.find_elements("css selector", "video")
        assert len(videos) == 2
        for video in videos:  # wait until the browser has decoded the first frame (or failed to)
            state = driver.execute_async_script(
                "const v = arguments[0], done = arguments[1];"
                "if (v.readyState >= 2) return done('ok');"
                "v.addEventListener('loadeddata', () => done('ok')); v.addEventListener('error', () => done('error'));"
                "v.load();", video)
            assert state == "ok", video.get_attribute("src")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_report_states_both_central_claims(bench, tmp_path):
    """The quick bench has no render-and-decode preset; relabel its two rows to render the claim's paragraphs."""
    from wam.eval.html import write_report

    root, _ = bench
    board = json.loads((root / "results/leaderboard.json").read_text())
    vla, fast = (next(r for r in board["rows"] if r["preset"] == p) for p in ("vla", "fast-wam"))
    vla.update(philosophy="Render-and-Decode", future_at_deployment="generated")
    board["rows"].append({**fast, "preset": "render-skipped", "philosophy": "Render-and-Decode", "success": 1.0})
    board["central_claim"] = central_claim(board["rows"])
    curves = {p: [json.loads(line) for line in (root / f"out/{p}/run/train_log.jsonl").open()]
              for p in ("vla", "fast-wam")}
    html = " ".join(write_report(board, curves, root / "out", tmp_path).read_text().split())
    assert 'id="claim"' in html and "preset, <b>render-skipped</b> (its future skipped at deployment)" in html
    assert 'id="claim-generating"' in html and "the best, <b>vla</b>" in html
    assert "within one standard error" in html or "one standard error of the difference below" in html


def test_protocol_options_are_checked(capsys):
    assert main(["bench", "--groups", "hard"]) == 2
    assert "pass --protocol too" in capsys.readouterr().err
    assert main(["bench", "--protocol", "20-demos"]) == 2
    assert ("unknown protocol '20-demos'; choose from: 10-demos, 10-demos-per-task, mt50, generalization"
            in capsys.readouterr().err)
    assert main(["bench", "--protocol", "10-demos", "--groups", "impossible"]) == 2
    assert "unknown group(s) impossible" in capsys.readouterr().err
    assert main(["bench", "--protocol", "10-demos", "--tasks", "push-v3"]) == 2
    assert "pass --groups (from easy, medium, hard, very-hard)" in capsys.readouterr().err
    assert main(["bench", "--protocol", "10-demos", "--suite", "pusht"]) == 2
    assert "runs in the metaworld suite, not pusht" in capsys.readouterr().err


def test_a_protocol_fixes_the_scale_unless_told_otherwise_and_says_so():
    from wam.eval.bench import BenchConfig
    from wam.eval.protocols import PROTOCOLS

    protocol = PROTOCOLS["10-demos"]
    plain = BenchConfig(protocol="10-demos", groups=("hard",)).resolved()
    assert (plain.demos, plain.episodes, plain.max_steps, plain.steps, plain.seeds) == (10, 20, 500, 5000, (0, 1, 2))
    assert plain.tasks.split(",") == [f"{t}-v3" for t in ("assembly", "hand-insert", "pick-out-of-hole",
                                                          "pick-place", "push", "push-back")]
    assert protocol.deviations(asdict(plain)) == {}
    longer = BenchConfig(protocol="10-demos", groups=("hard",), steps=8000).resolved()
    assert protocol.deviations(asdict(longer)) == {"steps": {"ours": 8000, "protocol": 5000}}
    legacy = BenchConfig().resolved()  # WAM-Bench's own scale where nothing is given
    assert (legacy.demos, legacy.episodes, legacy.max_steps, legacy.steps) == (50, 50, 300, 5000)


def test_protocol_reports_each_group_over_seeds_beside_published_figures(bench, tmp_path, monkeypatch, capsys):
    """A protocol on MetaWorld's two quick tasks at --quick scale, two training seeds: each seed is its own run on
    the same demonstrations, the row aggregates them, and the published figure stands beside it. With the
    generalization grid: each factor asked for at every level, each cell on the first seeds of the main
    evaluation, reported as kept success in a heat map."""
    from wam.envs.variation import LEVELS
    from wam.eval import protocols

    root, _ = bench  # the quick bench collected the same demonstrations: the protocol's collection finds them done
    for collection in ("data", "heldout"):
        shutil.copytree(root / "out" / collection, tmp_path / "out/quick" / collection)

    tiny = protocols.Protocol(name="tiny", suite="metaworld", description="two easy tasks", groups=("quick",),
                              demos=5, episodes=2, max_steps=60, steps=20, seeds=(0, 1),
                              references=(protocols.Reference("Someone's policy", {"quick": 50.0}, "a paper"),),
                              differences="none worth naming", shift_cell_episodes=2)
    monkeypatch.setitem(protocols.PROTOCOLS, "tiny", tiny)
    out, results = tmp_path / "out", tmp_path / "results"
    command = ["bench", "--protocol", "tiny", "--quick", "--presets", "vla", "--envs", "1", "--out", str(out),
               "--results", str(results), "--shift-factors"]
    assert main([*command, "fog"]) == 2
    assert "unknown factor(s) fog for --shift-factors" in capsys.readouterr().err
    assert main([*command, "camera", "--shift-levels", "extreme"]) == 2
    assert "unknown level(s) extreme for --shift-levels" in capsys.readouterr().err
    assert main([*command, "camera", "displacement"]) == 0
    board = json.loads((results / "leaderboard.json").read_text())
    assert board["protocol"]["name"] == "tiny" and board["protocol"]["seeds"] == [0, 1]
    group = board["groups"]["quick"]
    (r,) = group["rows"]
    assert r["seeds"] == [0, 1] and len(r["success_per_seed"]) == 2 and r["episodes"] == 2 * 2 * 2
    assert r["success"] == pytest.approx(sum(r["success_per_seed"]) / 2)
    assert 0 <= r["ci95"][0] <= r["success"] <= r["ci95"][1] <= 1
    assert sum(r["failures"].values()) == round(r["episodes"] * (1 - r["success"]))
    assert set(r["failures"]) <= set(board["failure_tags"])
    assert group["references"] == [{"system": "Someone's policy", "success": 0.5, "source": "a paper"}]
    assert group["free_goals"] == {"image_size": 64, "marker_pixels": {}}  # the quick tasks' buttons show where to press
    expert = group["expert"]  # the expert under the same 60-step cap: its button presses take about 70
    assert expert["per_task"].keys() == set(group["tasks"]) and expert["success"] == pytest.approx(0.25)
    for seed in (0, 1):  # one run per seed on the group's one collection
        config = json.loads((out / f"quick/vla/seed-{seed}/run/train_config.json").read_text())
        assert config["seed"] == seed and config["data"] == str(out / "quick/data")
    # displacement needs a loose key object, which neither button nor drawer has
    assert set(r["shifts"]) == {f"camera={level}" for level in LEVELS}
    from wam.data.collect import EVAL_SEED_BASE
    from wam.envs import get_suite

    unshifted_expert = [s for t in ("button-press-topdown-v3", "drawer-close-v3")
                        for s in get_suite("metaworld").expert_successes(t, [EVAL_SEED_BASE], "state", 60)]
    for spec, cell in r["shifts"].items():  # one episode per task and seed
        assert cell["episodes"] == 4 and cell["tasks"] == ["button-press-topdown-v3", "drawer-close-v3"]
        assert cell["ci95"][0] <= cell["success"] <= cell["ci95"][1]
        info = json.loads((out / f"quick/vla/seed-1/shifts/{spec.replace('=', '-')}/eval_info.json").read_text())
        assert info["config"]["shift"] == spec and info["config"]["episodes"] == 1
        # the expert on the same starts under the shift, measured once for every entry; it reads the state, so a
        # moved camera leaves it as it does unshifted
        expert = json.loads((out / f"quick/expert-shifts/{spec.replace('=', '-')}.json").read_text())
        assert expert["shift"] == spec and set(expert["per_task"]) == set(cell["tasks"])
        assert cell["expert"] == pytest.approx(np.mean([o for t in cell["tasks"] for o in expert["per_task"][t]]))
        assert cell["expert"] == pytest.approx(np.mean(unshifted_expert))
    twins = [json.loads((out / f"quick/vla/seed-{s}/eval/{t}/eval_info.json").read_text())["per_episode"][0]["success"]
             for s in (0, 1) for t in ("button-press-topdown-v3", "drawer-close-v3")]
    assert r["shifts"]["camera=weak"]["unshifted"] == pytest.approx(sum(twins) / 4)
    summary = group["shift_summary"]
    assert summary["beats_baseline"] == {"camera=medium": []} and set(summary["worst_kept_at_middle"]) == {"vla"}
    html = (results / "report.html").read_text()
    assert "Someone&#39;s policy (published)" in html and "none worth naming" in html and "never-reached" in html
    assert 'id="shifts-quick"' in html and "No entry beats vla" in html
    assert "scripted expert, same starts" in html.split('id="shifts-quick"')[1]  # each cell's ceiling
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "bench_table.py"
    table = subprocess.run([sys.executable, str(script), str(results)], capture_output=True, text=True,
                           check=True).stdout
    assert "| `vla` | **" in table and "| *Someone's policy, published* | *50.0* |" in table
    assert "| *scripted expert, same starts* | *25.0* |" in table
    assert "| quick | button-press-topdown | drawer-close | **quick** |" in table  # the group's per-task table
    row = group["rows"][0]
    assert (f"| `vla` | {100 * row['per_task']['button-press-topdown-v3']:.0f} | "
            f"{100 * row['per_task']['drawer-close-v3']:.0f} | **{100 * row['success']:.1f}** [") in table
    # two results folders of the protocol, each with its own groups (here the same group under another name and
    # without its second seed), join into one table; a group in both is refused
    other = tmp_path / "other-groups"
    other.mkdir()
    other_group = {**group, "rows": [{**row, "preset": "fast-wam"}]}
    (other / "leaderboard.json").write_text(json.dumps({**board, "groups": {"slow": other_group},
                                                        "protocol": {**board["protocol"], "seeds": [0]}}))
    joined = subprocess.run([sys.executable, str(script), str(results), str(other)], capture_output=True, text=True,
                            check=True).stdout
    assert "| preset | quick (2 tasks) | slow (2 tasks) |" in joined
    assert "| `vla` | **" in joined and " | – |\n" in joined.split("| `vla` |")[1]  # vla is not in slow
    assert "| `fast-wam` | – | **" in joined and "[0, 1] on quick; [0] on slow" in joined
    twice = subprocess.run([sys.executable, str(script), str(results), str(results)], capture_output=True, text=True)
    assert twice.returncode != 0 and "group quick is in two of the results folders" in twice.stderr
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stderr.startswith(f"error: cannot read {tmp_path / 'nowhere'}")
    assert f"| camera=medium | 4 | {100 * np.mean(unshifted_expert):.0f} % |" in table
    assert "Beating `vla` under shift" in table
    # the fit gap: each seed's run screened on its own training demonstrations beside the bench's held-out screen
    gap = subprocess.run([sys.executable, str(script.with_name("fit_gap.py")), "--bench", str(out),
                          "--out", str(tmp_path / "fit_gap.json")], capture_output=True, text=True, check=True)
    rows = json.loads((tmp_path / "fit_gap.json").read_text())["rows"]
    assert [(g["entry"], g["seed"]) for g in rows] == [("vla", "seed-0"), ("vla", "seed-1")] and "vla" in gap.stdout
    for g in rows:
        heldout = json.loads((out / f"quick/vla/{g['seed']}/offline/offline_info.json").read_text())["offline"]
        assert g["heldout_action_mse_executed"] == pytest.approx(heldout["action_mse_executed"], rel=1e-4)
        assert g["train_action_mse_executed"] > 0 and g["ratio"] == pytest.approx(
            g["heldout_action_mse_executed"] / g["train_action_mse_executed"])
    wrong = subprocess.run([sys.executable, str(script.with_name("fit_gap.py")), "--bench", str(out), "--groups",
                            "medium"], capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith(f"error: no group medium in {out}")
    # coverage: each task's evaluation starts split at their median distance to the nearest demonstration start
    coverage = [sys.executable, str(script.with_name("coverage.py")), "--bench", str(out), "--results", str(results)]
    subprocess.run([*coverage, "--out", str(tmp_path / "coverage.json")], capture_output=True, text=True, check=True)
    rows = json.loads((tmp_path / "coverage.json").read_text())["rows"]
    assert [(r["split"], r["entry"]) for r in rows] == [(split, entry) for split in ("demonstrations", "control")
                                                        for entry in ("vla", "all entries")]
    for vla in rows[::2]:  # each split: 2 seeds x 2 tasks x the nearer of 2 starts, all 8 episodes in the halves
        assert vla["near"]["episodes"] == vla["far"]["episodes"] == 4
        assert vla["near"]["success"] * 4 + vla["far"]["success"] * 4 == pytest.approx(8 * row["success"])
        assert set(vla["median_distance_m"]) == {"button-press-topdown-v3", "drawer-close-v3"}
        assert all(0 < m < 0.5 for m in vla["median_distance_m"].values())
    assert rows[0]["median_distance_m"] != rows[2]["median_distance_m"]  # the control starts are other starts
    # one start's distance measured here, and the near half recounted from the records and the distances
    from wam.data.lerobot import read_episodes
    from wam.envs import get_suite

    distances = json.loads((tmp_path / "coverage.json").read_text())["distances_m"]["quick"]["demonstrations"]
    env = get_suite("metaworld").make_env("drawer-close-v3", track="state")
    def placed(seed: int) -> np.ndarray:  # the drawer's and the goal's positions after the reset
        env.reset(seed=seed)
        return env.ground_truth()["keypoints_xyz"][1:].reshape(-1)
    demo_seeds = [e["seed"] for e in read_episodes(out / "quick/data") if e["tasks"] == ["drawer-close-v3"]]
    seed = next(iter(distances["drawer-close-v3"]))
    nearest = min(np.linalg.norm(placed(int(seed)) - placed(s)) for s in demo_seeds)
    env.close()
    assert distances["drawer-close-v3"][seed] == pytest.approx(nearest, abs=1e-6)
    near_wins = 0
    for path in sorted((results / "records/quick/vla").glob("seed-*.json.gz")):
        for evaluation in json.loads(gzip.decompress(path.read_bytes()))["evals"].values():
            for e in evaluation["per_episode"]:
                task = distances[e["task"]]
                near_wins += e["success"] and task[str(e["seed"])] <= np.median(list(task.values()))
    assert rows[0]["near"]["success"] * 4 == near_wins
    wrong = subprocess.run([*coverage, "--groups", "medium"], capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith(f"error: no records of group medium in {results}")
    # paired: the entry against a copy of its records with one episode's outcome turned over
    twin = tmp_path / "twin"
    shutil.copytree(results / "records", twin / "records")
    turned = twin / "records/quick/vla/seed-0.json.gz"
    record = json.loads(gzip.decompress(turned.read_bytes()))
    first = next(iter(record["evals"].values()))["per_episode"][0]
    first["success"] = won = not first["success"]
    turned.write_bytes(gzip.compress(json.dumps(record).encode()))
    paired = [sys.executable, str(script.with_name("paired.py")), f"{results}:vla", f"{twin}:vla"]
    subprocess.run([*paired, "--coverage", str(tmp_path / "coverage.json"), "--out", str(tmp_path / "paired.json")],
                   capture_output=True, text=True, check=True)
    rows = json.loads((tmp_path / "paired.json").read_text())["rows"]
    assert [r["starts_of"] for r in rows] == ["all", "button-press-topdown-v3", "drawer-close-v3", "near", "far"]
    assert rows[0]["starts"] == 8 and rows[0]["success_a"] == pytest.approx(row["success"])
    assert (rows[0]["only_a"], rows[0]["only_b"], rows[0]["p_mcnemar"]) == ((0, 1, 1.0) if won else (1, 0, 1.0))
    assert rows[3]["starts"] == rows[4]["starts"] == 4 and rows[3]["only_a"] + rows[4]["only_a"] == rows[0]["only_a"]
    for wrong_side, message in ((f"{results}:uwm", "no records of uwm in group quick"), ("vla", "is not RESULTS:ENTRY")):
        wrong = subprocess.run([*paired[:2], wrong_side, f"{twin}:vla"], capture_output=True, text=True)
        assert wrong.returncode == 2 and message in wrong.stderr.strip().splitlines()[-1]
    (twin / "records/quick/vla/seed-1.json.gz").unlink()  # starts not in both are refused, not dropped
    wrong = subprocess.run(paired, capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith("not evaluated on the same starts in quick: "
                                                                   "4 only in A, 0 only in B (training seeds [0, 1] "
                                                                   "against [0]; --seeds chooses)")
    subprocess.run([*paired, "--seeds", "0", "--out", str(tmp_path / "paired-seed-0.json")], check=True,
                   capture_output=True)  # the seed both recorded
    (first_seed,) = (r for r in json.loads((tmp_path / "paired-seed-0.json").read_text())["rows"] if r["starts_of"] == "all")
    assert first_seed["starts"] == 4 and first_seed["success_a"] == pytest.approx(row["success_per_seed"][0])
    # the strong level alone: its cells are found done, and without a middle level there is no summary; the timing
    # of the first run is kept (its record holds it) unless --retime asks for a new one
    timing_file = out / "quick/vla/seed-0/timing.json"
    first_timing = timing_file.read_bytes()
    assert main([*command, "camera", "--shift-levels", "strong"]) == 0
    group = json.loads((results / "leaderboard.json").read_text())["groups"]["quick"]
    assert set(group["rows"][0]["shifts"]) == {"camera=strong"} and group["shift_summary"] is None
    assert 'id="shifts-quick"' in (results / "report.html").read_text()
    assert timing_file.read_bytes() == first_timing
    assert group["rows"][0]["latency_per_call_ms_p50"] == r["latency_per_call_ms_p50"]
    assert main([*command, "camera", "--shift-levels", "strong", "--retime"]) == 0
    assert timing_file.read_bytes() != first_timing  # a new pass: its load average and latencies differ
    group = json.loads((results / "leaderboard.json").read_text())["groups"]["quick"]
    # Every finished seed run is recorded beside the leaderboard (compact, without the machine's paths): with the
    # runs gone, the same bench is rebuilt from the records, trains nothing, and reports the same figures.

    record = gzip.decompress((results / "records/quick/vla/seed-1.json.gz").read_bytes()).decode()
    assert str(tmp_path) not in record and set(json.loads(record)["shifts"]) == {f"camera={v}" for v in LEVELS}
    capsys.readouterr()
    timed = group["rows"][0]  # the last timing pass is the one recorded
    # A run trained again after its record was written is refused rather than recorded over the measurement.
    summary_path = out / "quick/vla/seed-0/run/train_summary.json"
    kept = summary_path.read_text()
    summary_path.write_text(json.dumps({**json.loads(kept), "train_time_s": 1.0}))
    assert main([*command, "camera"]) == 2
    assert "records another training of vla than" in capsys.readouterr().err
    summary_path.write_text(kept)
    shutil.rmtree(out / "quick/vla")
    assert main([*command, "camera"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("taken from") == 2 and not (out / "quick/vla").exists()
    again = json.loads((results / "leaderboard.json").read_text())["groups"]["quick"]
    for key in ("success", "success_per_seed", "ci95", "per_task", "failures", "shifts", "offline", "train_time_s",
                "calls_per_episode", "parameters"):
        assert again["rows"][0][key] == board["groups"]["quick"]["rows"][0][key], key
    assert again["rows"][0]["latency_per_call_ms_p50"] == timed["latency_per_call_ms_p50"]
    assert again["shift_summary"] == board["groups"]["quick"]["shift_summary"]
    # Headline rows: the entries of --headline run at every seed, the others at the first alone.
    both = [*command[:command.index("vla") + 1], "fast-wam", *command[command.index("vla") + 1:], "camera"]
    assert main([*both, "--headline", "uva"]) == 2
    assert "--headline names uva, not among the entries run (vla, fast-wam)" in capsys.readouterr().err
    assert main([*both, "--headline", "vla"]) == 0
    headline = json.loads((results / "leaderboard.json").read_text())
    assert headline["protocol"]["headline"] == ["vla"]
    assert {r["preset"]: r["seeds"] for r in headline["groups"]["quick"]["rows"]} == {"vla": [0, 1], "fast-wam": [0]}
    assert (out / "quick/fast-wam/seed-0/run/model").exists() and not (out / "quick/fast-wam/seed-1").exists()
    assert "Training seeds: 0, 1 for vla, 0 for the others." in " ".join((results / "report.html").read_text().split())
    table = subprocess.run([sys.executable, str(script), str(results)], capture_output=True, text=True,
                           check=True).stdout
    assert "mean over training seeds ([0, 1] for `vla`, [0] for the others) ± their standard deviation" in table
    assert main([*both, "--headline"]) == 0  # naming none: every entry at the first seed
    none = json.loads((results / "leaderboard.json").read_text())
    assert none["protocol"]["seeds"] == [0] and none["protocol"]["headline"] == []
    assert {r["preset"]: r["seeds"] for r in none["groups"]["quick"]["rows"]} == {"vla": [0], "fast-wam": [0]}
    # A record measured under other settings is refused, as a run trained under others is.
    assert main([*command, "camera", "--batch-size", "8"]) == 2
    assert "delete it to measure anew" in capsys.readouterr().err
    # A damaged record is one line, and nothing is written.
    path, written = results / "records/quick/vla/seed-0.json.gz", (results / "leaderboard.json").read_bytes()
    for damaged in (path.read_bytes()[:40], b"not gzip", gzip.compress(b"[1, 2]")):
        path.write_bytes(damaged)
        assert main([*command, "camera"]) == 2
        assert "is not a readable record" in capsys.readouterr().err
    assert (results / "leaderboard.json").read_bytes() == written


def test_shift_rows_pool_seeds_and_bound_the_kept_success():
    from wam.eval.leaderboard import SeedRun, shift_rows

    def run(shifted, unshifted):
        return SeedRun(0, {}, {}, {}, {"camera=weak": {"factor": "camera", "level": "weak", "tasks": ["t"],
                                                       "shifted": shifted, "unshifted": unshifted,
                                                       "expert": [1] * (len(shifted) - 1) + [0]}})

    kept = shift_rows([run([1, 0, 1, 0], [1, 1, 1, 1]), run([1, 1, 0, 0], [1, 1, 1, 0])])["camera=weak"]
    assert kept["episodes"] == 8 and kept["success"] == 0.5 and kept["unshifted"] == 7 / 8
    assert kept["expert"] == 3 / 4  # the same starts in every seed: the first seed's
    assert kept["relative"] == pytest.approx(4 / 7)
    assert kept["relative_ci95"][0] < kept["relative"] < kept["relative_ci95"][1]
    assert shift_rows([run([0, 0], [0, 0])])["camera=weak"]["relative"] is None  # nothing to keep


def test_a_recipe_changes_the_demonstrations_or_the_training_of_its_preset(bench, tmp_path):
    """``preset+recipe`` entries: a randomized recipe trains on its own collection of the same seeds under the
    recipe's shift; a second camera's on a collection in the suite variant that has it; an augmentation recipe sets
    its model fields; each is named in the training settings."""
    from wam.data.lerobot import LeRobotDataset
    from wam.eval.bench import BenchConfig, Collection, collect_cell, entry_data, entry_heldout, screen_preset, train_preset
    from wam.presets.recipes import APPEARANCE_UP_TO_MEDIUM, parse_entry

    with pytest.raises(ValueError, match="unknown recipe"):
        parse_entry("vla+fog")
    with pytest.raises(ValueError, match="twice"):
        parse_entry("vla+colour-jitter+colour-jitter")
    root, _ = bench
    shutil.copytree(root / "out" / "data", tmp_path / "out/data")
    shutil.copytree(root / "out" / "heldout", tmp_path / "out/heldout")
    with pytest.raises(OptionError, match="metaworld-wrist suite"):
        BenchConfig(suite="pusht", tasks="pusht", presets=("vla+wrist-camera",)).resolved()
    # A recipe whose factor applies to none of the benched tasks (the quick tasks hold no loose object) is refused.
    with pytest.raises(ValueError, match="displacement' cannot shift any of button-press-topdown-v3, drawer-close"):
        BenchConfig(quick=True, presets=("vla+randomized-displacement",)).resolved()
    cfg = BenchConfig(quick=True, presets=("vla+randomized", "vla+colour-jitter", "vla+wrist-camera",
                                           "vla+randomized+randomized-placement", "vla+image-84"),
                      demos=1, steps=2, out=tmp_path / "out").resolved()
    (cell,) = cfg.cells()
    collect_cell(cfg, cell, list(cfg.presets))
    randomized = entry_data(cell, "vla+randomized", cfg.suite)
    assert randomized == Collection(tmp_path / "out/data+randomized", "metaworld", APPEARANCE_UP_TO_MEDIUM)
    randomized = randomized.path
    info = json.loads((randomized / "meta/info.json").read_text())["wam"]
    assert info["shift"] == APPEARANCE_UP_TO_MEDIUM
    plain = LeRobotDataset.load(cell.data)  # same seeds, same starts: the hand starts where it did
    assert np.allclose(LeRobotDataset.load(randomized).frames["observation.state"][0],
                       plain.frames["observation.state"][0])
    assert entry_data(cell, "vla+colour-jitter", cfg.suite) == Collection(cell.data, "metaworld")
    # Two collection recipes: one collection under both shifts.
    both = entry_data(cell, "vla+randomized+randomized-placement", cfg.suite)
    assert both == Collection(tmp_path / "out/data+randomized+randomized-placement", "metaworld",
                              f"{APPEARANCE_UP_TO_MEDIUM},placement=up-to-medium")
    assert json.loads((both.path / "meta/info.json").read_text())["wam"]["shift"] == both.shift
    wrist = entry_data(cell, "vla+wrist-camera", cfg.suite)
    assert wrist == Collection(tmp_path / "out/data+wrist-camera", "metaworld-wrist")
    train_preset(cfg, "vla+wrist-camera", cell)
    # Its offline screens read held-out demonstrations with both cameras, collected in the variant.
    assert screen_preset(cfg, "vla+wrist-camera", cell)["offline"]["action_mse_executed"] >= 0
    assert (tmp_path / "out/heldout+metaworld-wrist/meta/info.json").exists()
    config = json.loads((cell.preset_dir("vla+wrist-camera") / "run/model/config.json").read_text())
    assert config["suite"] == "metaworld-wrist"
    assert list(config["observation_shapes"]) == ["observation.images.corner2", "observation.images.gripperPOV",
                                                  "observation.state"]
    # Another image size: its own demonstrations and held-out ones rendered at it; the model reads that size.
    assert entry_data(cell, "vla+image-84", cfg.suite) == Collection(tmp_path / "out/data+image-84", "metaworld",
                                                                     image_size=84)
    assert entry_heldout(cell, "vla+image-84", cfg.suite).path == tmp_path / "out/heldout+image-84"
    assert entry_heldout(cell, "vla+wrist-camera+image-84", cfg.suite).path == \
        tmp_path / "out/heldout+metaworld-wrist+image-84"
    with pytest.raises(ValueError, match="images of several sizes: 84, 128"):
        entry_data(cell, "vla+image-84+image-128", cfg.suite)
    # A size the preset's substrate cannot take is refused before anything is collected.
    with pytest.raises(OptionError, match="uva\\+image-84: images of 84x84 cannot pass the frame autoencoder"):
        BenchConfig(quick=True, presets=("uva+image-84",), out=tmp_path / "none").resolved()
    with pytest.raises(OptionError, match="vla\\+spatial-softmax\\+spatial-tokens: image_keypoints=32 reads one token"):
        BenchConfig(quick=True, presets=("vla+spatial-softmax+spatial-tokens",), out=tmp_path / "none").resolved()
    with pytest.raises(OptionError, match="uwm\\+no-future-loss: future_weight=0 leaves the future untrained"):
        BenchConfig(quick=True, presets=("uwm+no-future-loss",), out=tmp_path / "none").resolved()
    # Flow matching only where a backbone denoises, and never where the preset flows already (it would change nothing).
    with pytest.raises(OptionError, match="flare\\+flow-matching: parameterization='flow' would change nothing: "
                                          "backbone 'jepa'"):
        BenchConfig(quick=True, presets=("flare+flow-matching",), out=tmp_path / "none").resolved()
    with pytest.raises(OptionError, match="uva\\+flow-matching: recipe flow-matching changes nothing of preset uva"):
        BenchConfig(quick=True, presets=("uva+flow-matching",), out=tmp_path / "none").resolved()
    assert not (tmp_path / "none").exists()
    train_preset(cfg, "vla+flow-matching", cell)
    assert json.loads((cell.preset_dir("vla+flow-matching") / "run/model/config.json").read_text())[
        "parameterization"] == "flow"
    train_preset(cfg, "vla+image-84", cell)
    config = json.loads((cell.preset_dir("vla+image-84") / "run/model/config.json").read_text())
    assert config["observation_shapes"]["observation.images.corner2"][:2] == [84, 84]
    assert screen_preset(cfg, "vla+image-84", cell)["offline"]["action_mse_executed"] >= 0
    train_preset(cfg, "vla+colour-jitter", cell)
    folder = cell.preset_dir("vla+colour-jitter")
    assert json.loads((folder / "bench_train.json").read_text())["recipes"] == ["colour-jitter"]
    assert json.loads((folder / "run/model/config.json").read_text())["augment_colour"] == 0.3
    train_preset(cfg, "vla+spatial-tokens+history-4", cell)  # two model recipes at once, on the plain data
    config = json.loads((cell.preset_dir("vla+spatial-tokens+history-4") / "run/model/config.json").read_text())
    assert (config["image_tokens"], config["n_obs"]) == (16, 4)
    assert train_preset(cfg, "vla+double-steps", cell)["steps"] == 2 * cfg.steps  # the same data, twice the steps
    assert json.loads((cell.preset_dir("vla+double-steps") / "bench_train.json").read_text())["steps"] == 2 * cfg.steps
    # Step recipes multiply: the entry's own steps, not the bench's, and never trained as a deployment.
    from wam.presets.recipes import training_steps
    assert training_steps(parse_entry("vla+quadruple-steps+double-steps")[1], 5000) == 40000
    assert not parse_entry("vla+quadruple-steps")[1][0].deployment_only


def test_a_deployment_recipe_evaluates_the_run_trained_without_it(bench, tmp_path):
    """``fast-wam+test-time-future`` trains nothing: it evaluates fast-wam's run, deployed with adaptation,
    into its own folder; ``world-model-mpc+prior-proposals`` likewise, searching with the model's prior."""
    from wam.couplings.planners import PlannerOverrides
    from wam.eval.bench import BenchConfig, _eval_config, evaluate_preset, train_preset
    from wam.options import OptionError
    from wam.presets.recipes import trained_entry

    entry = "fast-wam+test-time-future"
    assert trained_entry(entry) == "fast-wam" and trained_entry("vla+randomized") == "vla+randomized"
    assert trained_entry("flare+randomized+ensemble") == "flare+randomized"
    assert trained_entry("vla+image-84+replan-4") == "vla+image-84"
    # A design that cannot deploy so is refused when the bench is configured, before anything trains.
    with pytest.raises(OptionError, match="vla\\+test-time-future: this model cannot adapt at test time: a VLA"):
        BenchConfig(quick=True, presets=("fast-wam", "vla+test-time-future"), out=tmp_path / "none").resolved()
    with pytest.raises(OptionError, match="world-model-mpc\\+test-time-inverse: .* no inverse dynamics"):
        BenchConfig(quick=True, presets=("world-model-mpc+test-time-inverse",), out=tmp_path / "none").resolved()
    # A planner recipe changes a rollout coupling's search: it too trains nothing, and a model that does not plan
    # is refused.
    assert trained_entry("world-model-mpc+prior-proposals") == "world-model-mpc"
    with pytest.raises(OptionError, match="fast-wam\\+prior-proposals: coupling 'post-head' does not plan"):
        BenchConfig(quick=True, presets=("fast-wam+prior-proposals",), out=tmp_path / "none").resolved()
    BenchConfig(quick=True, presets=("world-model-mpc+prior-proposals",), out=tmp_path / "none").resolved()
    # A sampler recipe evaluates the plain run with more steps per call; a preset that samples nothing is refused.
    assert trained_entry("fast-wam+sampler-50") == "fast-wam"
    with pytest.raises(OptionError, match="flare\\+sampler-50: backbone 'jepa' samples nothing in steps"):
        BenchConfig(quick=True, presets=("flare+sampler-50",), out=tmp_path / "none").resolved()
    assert not (tmp_path / "none").exists()
    root, _ = bench
    shutil.copytree(root / "out", tmp_path / "out")
    cfg = BenchConfig(quick=True, presets=(entry,), out=tmp_path / "out", envs=1).resolved()
    (cell,) = cfg.cells()
    model = tmp_path / "out/fast-wam/run/model/model.safetensors"
    stamp = model.stat().st_mtime_ns
    assert train_preset(cfg, entry, cell)["steps"] == 20
    assert model.stat().st_mtime_ns == stamp  # nothing was trained
    # A planner recipe's evaluations read the plain run and search with the recipe's proposal.
    planned = _eval_config(cfg, cell, "world-model-mpc+prior-proposals", cell.tasks, 1, tmp_path / "planned")
    assert planned.run == tmp_path / "out/world-model-mpc/run" and planned.planner == PlannerOverrides(proposal="prior")
    sampled = _eval_config(cfg, cell, "fast-wam+sampler-50", cell.tasks, 1, tmp_path / "sampled")
    assert sampled.run == tmp_path / "out/fast-wam/run" and sampled.inference_steps == 50
    assert _eval_config(cfg, cell, "fast-wam", cell.tasks, 1, tmp_path / "plain").inference_steps is None
    evals, offline = evaluate_preset(cfg, entry, cell)
    assert offline["model"]["run"] == str(tmp_path / "out/fast-wam/run")
    assert (tmp_path / "out" / entry / "offline" / "offline_info.json").exists()
    for task, info in evals.items():
        assert info["model"]["run"] == str(tmp_path / "out/fast-wam/run")
        assert info["model"]["deployment"]["adaptation"]["steps"] == 1
        assert (tmp_path / "out" / entry / "eval" / task / "eval_info.json").exists()


def test_shift_summary_names_the_worst_factor_and_who_beats_the_baseline():
    from wam.eval.leaderboard import shift_summary

    def row(preset, kept, low, high):
        return {"preset": preset, "shifts": {
            f"{f}=medium": {"level": "medium", "relative": k, "ci95": [lo, hi]}
            for f, k, lo, hi in zip(("camera", "colour"), kept, low, high, strict=True)}}

    rows = [row("vla", [0.5, 0.9], [0.2, 0.6], [0.4, 0.9]), row("flare", [0.8, None], [0.5, 0.1], [0.7, 0.5])]
    summary = shift_summary(rows)
    assert summary["worst_kept_at_middle"] == {"vla": {"shift": "camera=medium", "kept": 0.5},
                                               "flare": {"shift": "colour=medium", "kept": None}}
    assert summary["beats_baseline"] == {"camera=medium": ["flare"], "colour=medium": []}
    assert shift_summary([{"preset": "vla", "shifts": {}}]) is None
