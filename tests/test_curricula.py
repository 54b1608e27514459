"""Data curricula: action-free video from declared sources, mixtures with labelled data, the training stages that
use them (co-training, video pretraining), and the bench recipes that add such video, on real MetaWorld
collections."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TASKS, assert_one_line_error, wam_refused
from wam.anatomy import SpecError
from wam.data import latent_actions
from wam.data.check import check_dataset
from wam.data.collect import CollectConfig, run_collect
from wam.data.lerobot import DatasetError, LeRobotDataset, dataset_suite
from wam.data.mixture import combine
from wam.model import CheckpointError
from wam.options import OptionError
from wam.presets.models import PRESETS
from wam.train.loop import TrainConfig, build_model, train

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    """Action-free expert video of the first fixture task, from other seeds than the labelled demonstrations."""
    out = tmp_path_factory.mktemp("video") / "expert"
    run_collect(CollectConfig(tasks="button-press-topdown-v3", episodes=2, out=out, workers=1, seed=100,
                              no_actions=True))
    return out


@pytest.fixture(scope="module")
def noisy_data(tmp_path_factory):
    """A non-expert actor on drawer-open from the labelled data's first seed (0), with its actions kept (its first
    60 steps: it would mostly fail and run to the cap)."""
    out = tmp_path_factory.mktemp("video") / "noisy"
    run_collect(CollectConfig(tasks="drawer-open-v3", episodes=1, out=out, workers=1, action_noise=1.0, max_steps=60))
    return out


def test_action_free_video_is_a_sound_dataset_without_actions(video_data, pusht_data, tmp_path):
    info = json.loads((video_data / "meta/info.json").read_text())
    assert "action" not in info["features"] and info["wam"]["actions"] is False
    assert check_dataset(video_data) == []
    video = LeRobotDataset.load(video_data)
    assert not video.has_actions and "action" not in video.frames
    assert {e["seed"] for e in video.episodes} == {100, 101}
    # Without our metadata block (another tool wrote it) action-free video names its suite by its observations.
    info = json.loads((pusht_data / "meta/info.json").read_text())
    info.pop("wam"), info["features"].pop("action")
    assert dataset_suite(info, tmp_path / "info.json") == "pusht"


def test_a_noisy_actor_makes_single_seeded_attempts(vision_data, noisy_data, tmp_path):
    labelled, noisy = LeRobotDataset.load(vision_data), LeRobotDataset.load(noisy_data)
    expert = next(e for e in labelled.episodes if e["tasks"] == ["drawer-open-v3"] and e["seed"] == 0)
    (attempt,) = noisy.episodes
    assert attempt["seed"] == 0  # one attempt, never retried on another seed
    first = slice(expert["dataset_from_index"], expert["dataset_from_index"] + 1)
    assert np.array_equal(noisy.frames["observation.state"][:1], labelled.frames["observation.state"][first])
    steps = min(attempt["length"], expert["length"])
    taken, planned = noisy.frames["action"][:steps], labelled.frames["action"][first.start:first.start + steps]
    assert np.abs(taken - planned).mean() > 0.2  # noise of half the range per unit of --action-noise
    again = tmp_path / "again"
    run_collect(CollectConfig(tasks="drawer-open-v3", episodes=1, out=again, workers=1, action_noise=1.0, max_steps=60))
    assert np.array_equal(LeRobotDataset.load(again).frames["action"], noisy.frames["action"])


def test_video_from_another_viewpoint_shows_the_same_start_differently(vision_data, tmp_path):
    out = tmp_path / "camera"
    run_collect(CollectConfig(tasks="button-press-topdown-v3", episodes=1, out=out, workers=1, no_actions=True,
                              shift="camera"))
    moved, labelled = LeRobotDataset.load(out), LeRobotDataset.load(vision_data)
    assert json.loads((out / "meta/info.json").read_text())["wam"]["shift"] == "camera=medium"
    image = "observation.images.corner2"
    assert np.array_equal(moved.frames["observation.state"][0], labelled.frames["observation.state"][0])
    assert np.abs(moved.frames[image][0].astype(int) - labelled.frames[image][0]).mean() > 5


def test_a_mixture_keeps_every_source_apart(vision_data, video_data, noisy_data):
    labelled, video, noisy = (LeRobotDataset.load(p) for p in (vision_data, video_data, noisy_data))
    mixed = combine(labelled, [noisy, video])
    assert mixed.num_frames == labelled.num_frames + video.num_frames + noisy.num_frames
    assert [e["source"] for e in mixed.episodes] == [0] * 4 + [1] + [2] * 2
    assert [e["actions"] for e in mixed.episodes] == [True] * 4 + [False] * 3
    assert mixed.tasks == TASKS.split(",")  # the video tasks are among the labelled ones here
    for e in mixed.episodes:
        lo, hi = e["dataset_from_index"], e["dataset_to_index"]
        assert (mixed.frames["episode_index"][lo:hi] == e["episode_index"]).all()
        assert {mixed.tasks[i] for i in mixed.frames["task_index"][lo:hi]} == set(e["tasks"])
    assert not mixed.frames["action"][labelled.num_frames:].any()  # a labelled video's actions are ignored
    assert mixed.stats is labelled.stats


def test_a_mixture_refuses_video_of_another_robot_or_camera(vision_data, video_data, pusht_data):
    labelled, video = LeRobotDataset.load(vision_data), LeRobotDataset.load(video_data)
    with pytest.raises(DatasetError, match="pusht suite"):
        combine(labelled, [LeRobotDataset.load(pusht_data)])
    small = replace(video, frames={**video.frames, "observation.images.corner2":
                                   video.frames["observation.images.corner2"][:, ::2, ::2]})
    with pytest.raises(DatasetError, match="--image-size"):
        combine(labelled, [small])
    with pytest.raises(DatasetError, match="pass it with --video"):
        combine(video, [labelled])


def test_video_windows_cover_every_episode_and_hold_no_action(vision_data, video_data):
    mixed = combine(LeRobotDataset.load(vision_data), [LeRobotDataset.load(video_data)])
    model = build_model("fast-wam", mixed, d_model=32, n_layers=1, n_heads=2)
    labelled, video = model.windows(mixed), model.windows(mixed, video=True)
    assert len(video) == mixed.num_frames and len(labelled) == mixed.episodes[4]["dataset_from_index"]
    batch = video.sample(3, np.random.default_rng(0))
    assert "action" not in batch and "future.observation.images.corner2" in batch


def action_parameters(name: str) -> bool:
    """Parameters only the action uses: its stream's embeddings and heads, a VLM's action expert, a separate
    inverse-dynamics head."""
    return ".action" in name or "expert." in name or name.startswith("coupling.head.")


def docs_table() -> dict[str, tuple[str, str]]:
    """docs/curricula.md's "which presets can use which": preset -> (cotrain / pretrain, latent-actions)."""
    text = (Path(__file__).parents[1] / "docs/curricula.md").read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| `")]
    return {r[0].strip(" `"): (r[3].strip(), r[4].strip()) for r in rows if len(r) == 5}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_video_trains_the_future_and_never_the_action(preset, vision_data, video_data):
    mixed = combine(LeRobotDataset.load(vision_data), [LeRobotDataset.load(video_data)])
    torch.manual_seed(0)
    model = build_model(preset, mixed, d_model=32, n_layers=1, n_heads=2).train()
    assert docs_table()[preset] == ("yes" if model.learns_from_video else "no", "yes")
    model.add_caches(mixed)  # the substrates' codes of every frame (their fitting does not matter here)
    # Latent actions take the action's place in the whole loss: every preset learns them.
    mixed.frames[latent_actions.LATENT_ACTION] = np.full((mixed.num_frames, 16, 4), 0.5, np.float32)
    batch = model.windows(mixed, video=True, latent_actions=True).sample(4, np.random.default_rng(0))
    loss, parts = model(batch, 1)
    loss.backward()
    assert torch.isfinite(loss) and "loss/action" in parts
    model.zero_grad(set_to_none=True)
    if not model.learns_from_video:  # a VLA predicts no future; a forward model p(s | c, a) needs the action
        assert not model.substrates or model.coupling.plans
        with pytest.raises(SpecError, match="cannot learn from action-free video"):
            model.video_loss({})
        return
    batch = model.windows(mixed, video=True).sample(4, np.random.default_rng(0))
    loss, parts = model(None, 1, batch)
    loss.backward()
    assert torch.isfinite(loss) and parts and all(k.startswith("loss/video/future.") for k in parts)
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert not [n for n, g in grads.items() if action_parameters(n) and g is not None and g.abs().sum() > 0]
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "future" in n)


def losses(run) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_pretraining_on_video_then_acting_resumes_exactly(vision_data, video_data, tmp_path):
    cfg = TrainConfig(data=vision_data, video=(video_data,), out=tmp_path / "a", preset="fast-wam", steps=6,
                      batch_size=4, warmup_steps=2, log_every=1, save_every=2, threads=1, curriculum="pretrain",
                      video_steps=3)
    train(cfg)
    log = losses(cfg.out)
    assert all(set(r) >= {"loss/video/future.feature-encoder-only"} and "loss/action" not in r for r in log[:3])
    assert all("loss/action" in r and not any(k.startswith("loss/video") for k in r) for r in log[3:])
    lrs = [r["lr"] for r in log]
    assert lrs[3] > lrs[2]  # the action stage warms up afresh
    run = json.loads((cfg.out / "train_config.json").read_text())
    assert [(s["labelled"], s["episodes"]) for s in run["sources"]] == [(True, 4), (False, 2)]
    # Killed after the checkpoint inside the video stage: resuming crosses the stage boundary as the run did.
    resumed = tmp_path / "b"
    resumed.mkdir()
    for name in ("train_config.json", "train_log.jsonl"):
        shutil.copy(cfg.out / name, resumed)
    shutil.copytree(cfg.out / "checkpoints/step-000002", resumed / "checkpoints/step-000002")
    train(replace(cfg, out=resumed, resume=True))
    assert [r["loss"] for r in losses(resumed)] == [r["loss"] for r in log]
    a, b = (load_file(str(run / "model/model.safetensors")) for run in (cfg.out, resumed))
    assert all(a[k].equal(b[k]) for k in a)


def test_cotraining_adds_video_windows_to_every_step(vision_data, video_data, noisy_data, tmp_path):
    cfg = TrainConfig(data=vision_data, video=(video_data, noisy_data), out=tmp_path / "c", preset="fast-wam",
                      steps=3, batch_size=4, log_every=1, threads=1, video_weight=0.5)
    train(cfg)
    assert all({"loss/action", "loss/video/future.feature-encoder-only"} <= set(r) for r in losses(cfg.out))
    run = json.loads((cfg.out / "train_config.json").read_text())
    assert run["video"] == [str(video_data), str(noisy_data)] and run["trained_on_episodes"] == 4


def test_unusable_video_is_refused_clearly(vision_data, video_data, tmp_path):
    common = ("--data", vision_data, "--out", tmp_path / "r", "--steps", "4")
    assert_one_line_error(wam_refused("train", "--preset", "vla", "--video", video_data, *common),
                          "preset vla cannot use action-free video", "--curriculum latent-actions")
    assert_one_line_error(wam_refused("train", "--preset", "vjepa2-ac", "--video", video_data, *common),
                          "'rollout'", "p(s | c, a)")
    assert_one_line_error(wam_refused("train", "--preset", "fast-wam", "--video-steps", "2", *common),
                          "--curriculum pretrain")
    assert_one_line_error(wam_refused("train", "--preset", "fast-wam", "--curriculum", "pretrain", *common),
                          "--curriculum pretrain needs --video-steps between 1 and --steps - 1 (3)")
    assert_one_line_error(wam_refused("train", "--preset", "fast-wam", "--data", video_data, "--out", tmp_path / "v"),
                          "no action labels", "--video")
    assert not (tmp_path / "r").exists() or not (tmp_path / "r/model").exists()
    assert_one_line_error(wam_refused("collect", "--tasks", "drawer-open-v3", "--episodes", "1", "--out",
                                      tmp_path / "c", "--shift", "sideways"), "unknown factor 'sideways'", "camera")
    assert not (tmp_path / "c").exists()


@pytest.fixture(scope="module")
def fitted_lam(vision_data, video_data):
    """A latent action model fitted briefly on the labelled frames and the video."""
    mixed = combine(LeRobotDataset.load(vision_data), [LeRobotDataset.load(video_data)])
    config = latent_actions.LatentActionConfig("observation.images.corner2", 64, horizon=16, action_dim=4)
    model, report = latent_actions.fit(mixed, config, steps=150, seed=0, batch_size=32)
    return mixed, model, report


def test_the_latent_action_carries_how_the_scene_moved(fitted_lam):
    mixed, model, report = fitted_lam
    # The decoder predicts the frame at t + H better with the latent than with it zeroed: the bottleneck is used.
    assert report["prediction_mse"] < 0.9 * report["prediction_mse_without_latent"]
    labels = latent_actions.label(model, mixed)
    assert labels.shape == (mixed.num_frames, 16, 4)
    assert set(np.unique(labels)) <= {-1.0, -0.5, 0.0, 0.5, 1.0}  # five levels per value
    assert np.array_equal(labels[:, :8], labels[:, 7::-1][:, ::-1]) and np.array_equal(labels, latent_actions.label(
        model, mixed, batch_size=7))  # each token held over its half of the chunk; batching changes nothing


def test_a_damaged_latent_action_model_is_refused(fitted_lam, tmp_path):
    _, model, report = fitted_lam
    latent_actions.save(model, report, tmp_path)
    again, _ = latent_actions.load(tmp_path, model.config)
    assert all(a.equal(b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="delete that directory"):
        latent_actions.load(tmp_path, model.config)
    with pytest.raises(CheckpointError, match="fitted for"):
        latent_actions.save(model, report, tmp_path)
        latent_actions.load(tmp_path, replace(model.config, tokens=4))


def test_a_policy_without_a_future_pretrains_on_latent_actions(vision_data, video_data, tmp_path):
    cfg = TrainConfig(data=vision_data, video=(video_data,), out=tmp_path / "a", preset="vla", steps=4, batch_size=4,
                      warmup_steps=1, log_every=1, save_every=2, threads=1, curriculum="latent-actions",
                      video_steps=2, latent_action_steps=20)
    summary = train(cfg)
    assert set(summary["latent_actions"]) >= {"prediction_mse", "prediction_mse_without_latent", "action_probe_r2"}
    fitted = cfg.out / "latent_actions/model.safetensors"
    stamp = fitted.stat().st_mtime_ns
    resumed = tmp_path / "b"
    resumed.mkdir()
    for name in ("train_config.json", "train_log.jsonl"):
        shutil.copy(cfg.out / name, resumed)
    shutil.copytree(cfg.out / "checkpoints/step-000002", resumed / "checkpoints/step-000002")
    shutil.copytree(cfg.out / "latent_actions", resumed / "latent_actions")
    train(replace(cfg, out=resumed, resume=True))  # reuses the fitted latent action model
    assert [r["loss"] for r in losses(resumed)] == [r["loss"] for r in losses(cfg.out)]
    assert fitted.stat().st_mtime_ns == stamp


def test_latent_actions_need_camera_frames(state_data, tmp_path):
    assert_one_line_error(wam_refused("train", "--preset", "vla", "--data", state_data, "--out", tmp_path / "r",
                                      "--steps", "4", "--curriculum", "latent-actions", "--video-steps", "2"),
                          "latent actions are learned from camera frames", "--track vision")


def test_a_collection_from_before_the_source_options_still_resumes(vision_data, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(vision_data, old)
    path = old / "meta/collect_config.json"
    recorded = json.loads(path.read_text())
    for key in ("suite", "no_actions", "shift", "action_noise"):  # options added after such a collection was made
        recorded.pop(key)
    path.write_text(json.dumps(recorded))
    assert run_collect(CollectConfig(tasks=TASKS, episodes=2, out=old, workers=2))["total_episodes"] == 4
    with pytest.raises(DatasetError, match="other arguments.*shift"):
        run_collect(CollectConfig(tasks=TASKS, episodes=2, out=old, workers=2, shift="camera"))


def test_a_video_recipe_adds_action_free_video_of_other_placements(tmp_path):
    """``preset+video-5x``: five action-free expert episodes per demonstration of each task, at seeds apart from the
    demonstrations', collected beside them and co-trained; a preset that cannot learn from them is refused before
    anything is collected, and the latent-action recipe spends half the steps on the video stage."""
    from wam.data.collect import VIDEO_SEED_BASE
    from wam.data.lerobot import LeRobotDataset
    from wam.eval.bench import BenchConfig, Collection, collect_cell, entry_data, entry_video, train_preset
    from wam.presets.recipes import APPEARANCE_UP_TO_MEDIUM, RECIPES, video_options

    with pytest.raises(OptionError, match="vla\\+video-5x: preset vla cannot use action-free video under "
                                          "--curriculum cotrain: it predicts no future"):
        BenchConfig(quick=True, presets=("vla+video-5x",), out=tmp_path / "none").resolved()
    BenchConfig(quick=True, presets=("vla+video-5x-latent",), out=tmp_path / "none").resolved()  # any preset can
    assert not (tmp_path / "none").exists()
    assert video_options((RECIPES["video-5x-latent"],), 3000) == {"curriculum": "latent-actions", "video_steps": 1500}
    assert video_options((RECIPES["video-5x"],), 3000) == {"curriculum": "cotrain"}
    assert video_options((RECIPES["colour-jitter"],), 3000) == {}
    with pytest.raises(OptionError, match="uva\\+video-5x\\+video-5x-latent: recipes add video twice"):
        BenchConfig(quick=True, presets=("uva+video-5x+video-5x-latent",), out=tmp_path / "none").resolved()
    # One demonstration per task (below --quick's five): ten videos to collect, not fifty.
    cfg = replace(BenchConfig(quick=True, presets=("fast-wam+video-5x", "fast-wam+video-randomized"), steps=2,
                              out=tmp_path / "out").resolved(), demos=1)
    (cell,) = cfg.cells()
    assert entry_video(cell, "fast-wam", cfg.suite, cfg.demos) is None
    video = entry_video(cell, "fast-wam+video-5x", cfg.suite, cfg.demos)
    assert video == Collection(tmp_path / "out/video-5x", "metaworld", episodes=5 * cfg.demos)
    assert entry_video(cell, "fast-wam+video-5x+image-84", cfg.suite, cfg.demos).path == tmp_path / "out/video-5x+image-84"
    assert entry_video(cell, "fast-wam+video-5x-latent", cfg.suite, cfg.demos) == video  # the same video, another stage
    # Video of other appearances is the recipe's own, collected under its shift; the demonstrations stay plain.
    randomized = entry_video(cell, "fast-wam+video-randomized", cfg.suite, cfg.demos)
    assert randomized == Collection(tmp_path / "out/video-randomized", "metaworld", shift=APPEARANCE_UP_TO_MEDIUM,
                                    episodes=cfg.demos)
    assert entry_data(cell, "fast-wam+video-randomized", cfg.suite) == entry_data(cell, "fast-wam", cfg.suite)
    with pytest.raises(OptionError, match="recipes add video twice: video-5x, video-randomized"):
        BenchConfig(quick=True, presets=("uva+video-5x+video-randomized",), out=tmp_path / "none").resolved()
    collect_cell(cfg, cell, list(cfg.presets))
    frames = LeRobotDataset.load(video.path)
    assert not frames.has_actions and len(frames.episodes) == video.episodes * len(cell.tasks.split(","))
    assert json.loads((video.path / "meta/info.json").read_text())["wam"]["seed"] == VIDEO_SEED_BASE
    first = "observation.images.corner2"  # other seeds: the first frames show the objects elsewhere
    assert not np.array_equal(frames.frames[first][0], LeRobotDataset.load(cell.data).frames[first][0])
    shifted = LeRobotDataset.load(randomized.path)  # the same seeds as the plain video's first, other appearances
    assert not shifted.has_actions and len(shifted.episodes) == len(cell.tasks.split(","))
    assert json.loads((randomized.path / "meta/info.json").read_text())["wam"]["shift"] == APPEARANCE_UP_TO_MEDIUM
    assert not np.array_equal(shifted.frames[first][0], frames.frames[first][0])
    train_preset(cfg, "fast-wam+video-5x", cell)
    run = json.loads((cell.preset_dir("fast-wam+video-5x") / "run/train_config.json").read_text())
    assert (run["video"], run["curriculum"]) == ([str(video.path)], "cotrain")
