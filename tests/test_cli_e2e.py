"""End to end through the real command line: train both presets for a few steps, run closed-loop episodes in
MetaWorld, read the accuracy-at-budget report; plus --help everywhere and the bad-input paths."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error, wam_cli, wam_refused
from wam.eval.runner import task_success

COMMANDS = ["quickstart", "census", "collect", "train", "eval", "dream"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    result = wam_cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: wam" in result.stdout


def test_census_json():
    result = wam_cli("census", "--json", "--backbone", "jepa")
    rows = json.loads(result.stdout)
    assert [r["method"] for r in rows] and all(r["backbone"] == "Joint-embedding" for r in rows)


@pytest.mark.e2e
@pytest.mark.parametrize("preset", ["vla", "fast-wam"])
def test_train_then_eval_closed_loop(preset, vision_data, tmp_path):
    run = tmp_path / "run"
    result = wam_cli("train", "--preset", preset, "--data", vision_data, "--out", run, "--steps", "6",
                     "--batch-size", "8", "--device", "cpu", "--log-every", "3", "--save-every", "3")
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "train_config.json").read_text())["model"]["spec"]["backbone"] == "diffusion"
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [3, 6] and all(entry["loss"] > 0 for entry in log)
    assert (run / "checkpoints/step-000003/model/model.safetensors").exists()

    out = tmp_path / "eval"
    result = wam_cli("eval", "--run", run, "--tasks", "drawer-open-v3,button-press-topdown-v3", "--episodes", "2",
                     "--out", out, "--max-steps", "12", "--video", "1", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "accuracy at budget" in result.stdout and "feasible at 80 Hz" in result.stdout
    info = json.loads((out / "eval_info.json").read_text())
    assert len(info["per_episode"]) == 4
    first = info["per_episode"][0]
    assert {"episode_ix", "seed", "success", "steps", "sum_reward", "max_reward"} <= set(first)
    assert first["seed"] >= 1_000_000_000 and first["steps"] == 12
    budget = info["budget"]
    assert budget["model_calls"] == 4 * 2  # 12 steps at K=8: a call at step 0 and step 8, per episode
    assert budget["actions_executed"] == 48
    assert 0 < budget["latency_per_call_ms"]["p50"] <= budget["latency_per_call_ms"]["max"]
    assert budget["parameters"] > 100_000 and budget["peak_memory_mb"] > 50
    assert info["model"]["spec"]["deployment"] == "chunked"
    assert {"cpu", "cpu_cores", "torch", "device"} <= set(info["machine"])
    assert "pc_success" in info["aggregated"] and set(task_success(info)) == {"drawer-open-v3",
                                                                             "button-press-topdown-v3"}
    assert [(t["task_group"], t["task_id"]) for t in info["per_task"]] == [("drawer-open-v3", 0),
                                                                           ("button-press-topdown-v3", 0)]
    assert info["overall"]["n_episodes"] == 4 and set(info["per_group"]) == {"drawer-open-v3", "button-press-topdown-v3"}
    assert info["overall"]["pc_success"] == info["aggregated"]["pc_success"]
    failures = info["failures"]  # 12-step episodes fail: each names what went wrong, and the counts add up
    failed = [e for e in info["per_episode"] if not e["success"]]
    assert all(e["failure"] in failures["tags"] for e in failed)
    assert sum(failures["overall"].values()) == len(failed) and set(failures["per_task"]) == set(task_success(info))
    assert len(info["video_paths"]) == 2 and all((out / "videos").glob("*.mp4"))
    assert info["model"]["deployment"] == {"regime": "chunked", "n_action_steps": 8, "ensemble": None,
                                           "decode": False}
    cost = budget["cost_model"]
    assert cost["calls_per_episode_mean"] == 2 and cost["episode_steps_mean"] == 12
    assert cost["predicted_model_time_per_episode_s"] > 0 and cost["model_time_per_episode_s"] > 0


@pytest.mark.e2e
def test_sweep_writes_the_fidelity_latency_curve(vision_data, tmp_path):
    run = tmp_path / "run"
    result = wam_cli("train", "--data", vision_data, "--out", run, "--steps", "2", "--batch-size", "4",
                     "--device", "cpu", "--substrate", "pixel-latent", "--coupling", "joint", "--backbone", "hybrid",
                     "--substrate-fit-steps", "2", "--parameterization", "flow")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "sweep"
    args = ("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1", "--max-steps", "8", "--out", out,
            "--device", "cpu", "--sweep", "inference-steps=1,3", "n-action-steps=4,8", "future=skip,predict")
    result = wam_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "fidelity-latency sweep" in result.stdout
    sweep = json.loads((out / "sweep.json").read_text())
    assert len(sweep["points"]) == 8 and (out / "sweep.png").stat().st_size > 10_000
    by_name = {p["name"]: p for p in sweep["points"]}
    point = by_name["inference-steps=3_n-action-steps=4_future=predict"]
    info = json.loads((out / "points" / point["name"] / "eval_info.json").read_text())
    assert info["model"]["inference_steps"] == 3 and info["model"]["future_at_inference"] == "predict"
    assert info["budget"]["model_calls"] == 2 and point["calls_per_episode"] == 2
    assert by_name["inference-steps=1_n-action-steps=8_future=skip"]["calls_per_episode"] == 1
    # A finished point is not redone: resuming leaves its file untouched.
    stamp = (out / "points" / point["name"] / "eval_info.json").stat().st_mtime_ns
    assert wam_cli(*args).returncode == 0
    assert (out / "points" / point["name"] / "eval_info.json").stat().st_mtime_ns == stamp

    result = wam_cli("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1", "--out", out,
                     "--sweep", "sampler=1,2")
    assert_one_line_error(result, "sampler=1,2", "inference-steps")


@pytest.mark.e2e
def test_streaming_and_adaptive_deployments_on_the_command_line(vision_data, tmp_path):
    run = tmp_path / "run"
    result = wam_cli("train", "--data", vision_data, "--out", run, "--steps", "2", "--batch-size", "4",
                     "--device", "cpu", "--substrate", "feature-encoder-only", "--coupling", "joint",
                     "--backbone", "autoregressive", "--n-obs", "4", "--future-offsets", "2", "4", "8", "16")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "stream"
    result = wam_cli("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1", "--max-steps", "10",
                     "--out", out, "--device", "cpu", "--deployment", "single-step")
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "eval_info.json").read_text())
    assert info["model"]["deployment"] == {"regime": "single-step", "n_action_steps": 1, "kv_cache": True,
                                           "window": 4, "cache_tokens_max": 4 * 2}
    assert info["budget"]["model_calls"] == 10 and info["budget"]["n_action_steps"] == 1

    out = tmp_path / "adaptive"
    result = wam_cli("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1", "--max-steps", "16",
                     "--out", out, "--device", "cpu", "--n-action-steps", "16", "--surprise", "0")
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "eval_info.json").read_text())
    assert info["model"]["deployment"]["regime"] == "adaptive"
    assert info["model"]["deployment"]["checks"] == [2, 4, 8] and info["budget"]["model_calls"] == 8


def test_impossible_tuple_on_the_command_line(vision_data, tmp_path):
    result = wam_cli("train", "--preset", "fast-wam", "--data", vision_data, "--out", tmp_path / "r",
                     "--substrate", "pixel-decoded", "--backbone", "jepa")
    assert_one_line_error(result, "backbone 'jepa' cannot generate substrate 'pixel-decoded'")


def test_unknown_preset_and_missing_dataset(tmp_path):
    assert_one_line_error(wam_refused("train", "--preset", "vla", "--data", tmp_path / "none", "--out", tmp_path / "r"),
                          "is not a wam dataset")


def test_unknown_preset(vision_data, tmp_path):
    assert_one_line_error(wam_refused("train", "--preset", "gato", "--data", vision_data, "--out", tmp_path / "r"),
                          "unknown preset 'gato'", "fast-wam")


def test_eval_of_a_missing_run_and_an_unknown_task(tmp_path):
    assert_one_line_error(wam_refused("eval", "--run", tmp_path, "--tasks", "drawer-open-v3", "--episodes", "1",
                                  "--out", tmp_path / "e"), "config.json is missing")
    assert_one_line_error(wam_refused("eval", "--run", tmp_path, "--suite", "metaworld", "--tasks", "open-sesame-v3",
                                  "--episodes", "1", "--out", tmp_path / "e"), "unknown metaworld task 'open-sesame-v3'")


def test_fine_tuning_on_a_mismatched_dataset(vision_data, state_data, tmp_path):
    run = tmp_path / "run"
    assert wam_cli("train", "--preset", "vla", "--data", vision_data, "--out", run, "--steps", "1",
                   "--batch-size", "4").returncode == 0
    result = wam_refused("train", "--preset", "vla", "--data", state_data, "--out", tmp_path / "ft", "--init-from", run)
    assert_one_line_error(result, "observation.images.corner2", "has no such feature")


@pytest.mark.e2e
def test_census_row_trains_screens_offline_and_acts(vision_data, tmp_path):
    """GR-1's 4-tuple (pixel latent, autoregressive, joint, single-step) from the census, end to end."""
    run = tmp_path / "gr1"
    result = wam_cli("train", "--census", "gr-1", "--data", vision_data, "--out", run, "--steps", "3",
                     "--batch-size", "4", "--substrate-fit-steps", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["census"] == "gr-1"
    assert summary["spec"] == {"substrate": "pixel-latent", "coupling": "joint", "backbone": "autoregressive",
                               "deployment": "single-step"}
    result = wam_cli("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1", "--offline",
                     "--out", tmp_path / "off", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    screens = json.loads((tmp_path / "off/offline_info.json").read_text())["offline"]
    assert {"action_mse_executed", "future.pixel-latent/mse", "future.pixel-latent/psnr",
            "future.pixel-latent/ceiling_ssim"} <= set(screens)
    result = wam_cli("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1", "--max-steps", "3",
                     "--future", "predict", "--out", tmp_path / "ev", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    budget = json.loads((tmp_path / "ev/eval_info.json").read_text())["budget"]
    assert budget["model_calls"] == 3  # single-step deployment: one call per control step
    assert_one_line_error(wam_refused("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1",
                                  "--future", "truncate", "--out", tmp_path / "ev2"),
                          "'autoregressive' has no sampler steps to truncate")
    assert_one_line_error(wam_refused("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1", "--offline",
                                  "--data", vision_data, "--out", tmp_path / "off2"),
                          "were used for the training demonstrations", "omit --data")


def test_census_rows_that_cannot_train(vision_data, tmp_path):
    assert_one_line_error(wam_refused("train", "--census", "Audio-WM", "--data", vision_data, "--out", tmp_path / "r"),
                          "Audio-WM", "no audio")
    assert_one_line_error(wam_refused("train", "--census", "dreamzro", "--data", vision_data, "--out", tmp_path / "r"),
                          "did you mean", "DreamZero")


def test_pixel_substrate_needs_images(state_data, tmp_path):
    assert_one_line_error(wam_refused("train", "--data", state_data, "--out", tmp_path / "r", "--substrate",
                                  "pixel-decoded", "--coupling", "joint"),
                          "predicts images but the model observes none", "--track vision")


def test_zero_threads_or_processes_is_refused(vision_data, tmp_path):
    assert_one_line_error(wam_refused("train", "--preset", "vla", "--data", vision_data, "--out", tmp_path / "r",
                                  "--threads", "0"), "--threads must be at least 1")
    assert_one_line_error(wam_refused("train", "--preset", "vla", "--data", vision_data, "--out", tmp_path / "r",
                                  "--nproc", "0"), "--nproc must be at least 1")
    assert_one_line_error(wam_refused("eval", "--run", tmp_path / "r", "--tasks", "drawer-open-v3", "--episodes", "1",
                                  "--out", tmp_path / "e", "--threads", "0"), "--threads must be at least 1")
