"""``wam train``: fit a preset on a dataset, with AdamW, a cosine schedule and an EMA of the weights.

The run directory holds ``train_config.json`` (the resolved configuration), ``train_log.jsonl`` (one line per
logged step: loss and its parts, learning rate, gradient norm, samples per second), ``tensorboard/`` (the same
figures as TensorBoard events: ``tensorboard --logdir RUNS``) and ``model/`` (``config.json`` +
``model.safetensors`` of the EMA weights, which act better than the raw ones for diffusion policies); with
``--save-every N`` also ``checkpoints/step-N/`` (see ``wam.train.checkpoint``), which ``wam eval --run
RUN/checkpoints/step-N`` accepts and ``--resume`` continues from.

Action-free video (``--video``) joins the labelled demonstrations under a curriculum: ``cotrain`` adds video windows
to every step, which train the future streams while the labelled windows train everything; ``pretrain`` trains the
future streams alone on video for the first ``--video-steps`` steps, then the action on the labelled data;
``latent-actions`` fits a latent action model on the video (``wam.data.latent_actions``), trains the whole model
to predict its latent actions for ``--video-steps``, then on the real actions. Staged curricula give each stage
its own warm-up and cosine (docs/curricula.md).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import tyro
from annotated_types import Ge, Gt, Interval, Le
from tqdm import tqdm

from wam.anatomy import WAMSpec
from wam.compute import cpu_threads, resolve_device
from wam.couplings.planners import PlannerConfig, PlannerOverrides
from wam.data import latent_actions
from wam.data.lerobot import LeRobotDataset
from wam.data.mixture import combine
from wam.data.windows import WindowDataset
from wam.envs import Suite, check_suite_name, get_suite
from wam.io import atomic_write_bytes, atomic_write_json, config_dict
from wam.model import ModelConfig, WorldActionModel
from wam.options import CheckedOptions, OptionError
from wam.presets.census import census_spec, find_row
from wam.presets.models import preset
from wam.train import distributed
from wam.train.checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from wam.train.prefetch import Prefetcher

log = logging.getLogger(__name__)
RUNTIME_OPTIONS = ("out", "resume", "device", "threads", "log_every", "save_every", "keep_checkpoints", "suite",
                   "prefetch")
"""Options a resumed run may change: they do not alter what is trained."""


@dataclass
class TrainConfig(CheckedOptions):
    """Train a model preset on a collected dataset."""

    data: Path
    """Dataset directory written by `wam collect`."""
    out: Path
    """Run directory for the config, the log and the model."""
    preset: str | None = None
    """Model preset (docs/presets.md): a seed system such as fast-wam, gr-1 or unipi, or a baseline (vla,
    world-model-mpc). Without one (or with --census) the model is the 4-tuple
    given by --substrate/--coupling/--backbone/--deployment (default: fast-wam's) at the standard small sizes."""
    census: str | None = None
    """Train a census method's 4-tuple at small scale instead of a preset (see `wam census`), e.g. GR-1."""
    parameterization: Literal["epsilon", "sample", "flow"] | None = None
    """Override the denoising parameterization of diffusion and hybrid backbones."""
    substrate_fit_steps: Annotated[int | None, Ge(1)] = None
    """Override the autoencoder training steps of pixel-latent and feature-token substrates."""
    post_head: Literal["shared", "separate"] | None = None
    """Post-head coupling: action stream of the shared backbone, or a separate inverse-dynamics head."""
    planner: PlannerOverrides = field(default_factory=PlannerOverrides)
    """Rollout coupling: proposal, planner, objective and search sizes (also changeable at `wam eval`)."""
    n_obs: Annotated[int | None, Ge(1)] = None
    """Override the observation history length (the context window of a streaming deployment)."""
    future_offsets: tuple[Annotated[int, Ge(1)], ...] | None = None
    """Override which future frames t+k the substrate predicts, e.g. 4 8 12 16 (adaptive chunking checks there)."""
    image_tokens: Annotated[int | None, Ge(1)] = None
    """Override the context tokens per image: 1, or a square number for a grid of spatial tokens."""
    image_keypoints: Annotated[int | None, Ge(0)] = None
    """Override the image readout: K > 0 reads each image's token from K spatial-softmax keypoints (robomimic's
    and Diffusion Policy's readout), 0 from the flattened feature map."""
    augment_pad: Annotated[int | None, Ge(0)] = None
    """Random-shift augmentation in pixels (DrQ); default: the preset's (off: with a fixed camera it costs success)."""
    augment_colour: Annotated[float | None, Interval(ge=0, le=1)] = None
    """Colour-jitter augmentation strength (brightness, contrast, saturation x U(1-s, 1+s) per sample); default:
    the preset's (off). A lever against lighting and colour shifts (docs/generalization.md)."""
    freeze_predictor: bool = False
    """Train only the separate post-head (with --init-from a trained run): the future predictor stays fixed."""
    steps: Annotated[int, Ge(1)] = 3000
    """Optimizer steps."""
    batch_size: Annotated[int, Ge(1)] = 64
    lr: Annotated[float, Gt(0)] = 3e-4
    weight_decay: Annotated[float, Ge(0)] = 1e-4
    warmup_steps: Annotated[int, Ge(0)] = 200
    ema_decay: Annotated[float, Ge(0), Le(1)] = 0.999
    """Upper bound of the EMA decay (it warms up from 0, as in Diffusion Policy)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto picks cuda when available."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Arithmetic of the forward pass: fp32, or bf16 under autocast (CPU and CUDA) with float32 master weights,
    optimizer and EMA. bf16 pays where the hardware multiplies it natively (CUDA; CPUs with AVX512-BF16 or AMX)."""
    prefetch: Annotated[int, Ge(0)] = 2
    """Batches gathered ahead on a background thread while a step computes (0: in the step itself)."""
    threads: Annotated[int | None, Ge(1)] = None
    """CPU threads (default: torch's, one per core). Pass 1 when other jobs hold cores: threads waiting on a busy
    core made a fast-wam step 4x slower than one thread (measured with two other jobs on 2 cores)."""
    seed: Annotated[int, Ge(0)] = 0
    log_every: Annotated[int, Ge(1)] = 50
    save_every: Annotated[int, Ge(0)] = 0
    """Also checkpoint every N steps to checkpoints/step-N (the EMA model plus the full training state; 0: only
    the final model)."""
    keep_checkpoints: Annotated[int, Ge(0)] = 0
    """Keep only the newest N checkpoints (0: all)."""
    resume: bool = False
    """Continue from the latest checkpoint in --out (same options required); without one, start from scratch."""
    substrate: str | None = None
    """Override the preset's substrate (the 4-tuple is validated; see wam.anatomy)."""
    coupling: str | None = None
    """Override the preset's coupling."""
    backbone: str | None = None
    """Override the preset's backbone."""
    deployment: str | None = None
    """Override the preset's deployment."""
    init_from: Path | None = None
    """Start from the weights of an earlier run (fine-tuning); its inputs must match the dataset."""
    nproc: Annotated[int, Ge(1)] = 1
    """Train in N processes on this machine (DistributedDataParallel; gloo on CPU, nccl on CUDA): --batch-size is
    split over them. Equivalent to `torchrun --nproc_per_node=N -m wam.cli train ...`."""
    include_failed: bool = False
    """Also learn from the episodes the scripted expert failed (success=false in meta/episodes); by default their
    windows are skipped. Substrate fitting (autoencoders, keypoint statistics) sees every recorded frame either way:
    it learns what the scenes look like, not what to do."""
    deterministic: bool = False
    """Use only deterministic torch kernels (CUDA runs need this for bit-identical losses; CPU ones already are)."""
    suite: str | None = None
    """The suite the dataset must come from; default: whichever it records (the model remembers it)."""
    video: tyro.conf.UseAppendAction[tuple[Path, ...]] = ()
    """Action-free video datasets of the same suite and track (repeat: --video V1 --video V2): `wam collect
    --no-actions` collections, or labelled ones used as video (their actions ignored). Under cotrain and pretrain
    their windows train the future streams only (models that predict a future without reading the action); under
    latent-actions they train any model through the latent actions."""
    curriculum: Literal["cotrain", "pretrain", "latent-actions"] = "cotrain"
    """How video enters training. cotrain: every step adds --video-weight x --batch-size video windows (none without
    --video: plain training); pretrain: the first --video-steps steps train the future streams alone on video;
    latent-actions: a latent action model fitted on the video labels every frame, the first --video-steps steps train
    the whole model to predict those latent actions (LAPA). The video stages see the labelled episodes' frames too;
    after them the model trains on the labelled data alone, each stage with its own warm-up and cosine decay."""
    video_weight: Annotated[float, Gt(0), Le(8)] = 0.5
    """Co-training: video windows per step, as a fraction of --batch-size (added to the labelled windows)."""
    video_steps: Annotated[int, Ge(0)] = 0
    """Staged curricula (pretrain, latent-actions): how many of the --steps train on video alone."""
    latent_action_steps: Annotated[int, Ge(1)] = 1500
    """latent-actions: training steps of the latent action model (batch 64)."""
    synthetic: tyro.conf.UseAppendAction[tuple[Path, ...]] = ()
    """Synthetic datasets dreamed by a trained WAM (`wam synthesize`; repeat for several): labelled episodes that
    join the demonstrations' action windows (DreamGen)."""
    synthetic_share: Annotated[float, Interval(ge=0, le=1)] = 0.5
    """With --synthetic: the fraction of every labelled batch drawn from the dreamed episodes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.suite is not None:
            check_suite_name(self.suite)
        if self.staged and not 1 <= self.video_steps < self.steps:
            raise OptionError(f"--curriculum {self.curriculum} needs --video-steps between 1 and --steps - 1 "
                              f"({self.steps - 1}), got {self.video_steps}")
        if not self.staged and self.video_steps:
            raise OptionError("--video-steps sets the video stage of --curriculum pretrain or latent-actions; add one "
                              "or drop it")

    @property
    def staged(self) -> bool:
        """Whether a stage on video alone comes first."""
        return self.curriculum in ("pretrain", "latent-actions")

    @property
    def uses_video(self) -> bool:
        """Whether some steps train on video windows."""
        return bool(self.video) or self.staged

    def video_stage(self, step: int) -> bool:
        """Whether ``step`` belongs to the first stage, on video alone."""
        return self.staged and step <= self.video_steps

    def model_overrides(self) -> dict[str, Any]:
        """The ``ModelConfig`` fields set on the command line (the planner over the preset's own)."""
        base = preset(self.preset).get("planner", PlannerConfig()) if self.preset and not self.census else PlannerConfig()
        knobs = {"parameterization": self.parameterization, "substrate_fit_steps": self.substrate_fit_steps,
                 "post_head": self.post_head, "planner": self.planner.apply(base), "n_obs": self.n_obs,
                 "future_offsets": self.future_offsets, "image_tokens": self.image_tokens,
                 "image_keypoints": self.image_keypoints, "augment_pad": self.augment_pad,
                 "augment_colour": self.augment_colour}
        return {k: v for k, v in knobs.items() if v is not None}

    def spec_overrides(self) -> dict[str, str]:
        axes = ("substrate", "coupling", "backbone", "deployment")
        return {a: getattr(self, a) for a in axes if getattr(self, a) is not None}


def build_model(preset_name: str | None, dataset: LeRobotDataset, spec_overrides: dict[str, str] | None = None,
                **overrides: Any) -> WorldActionModel:
    """A fresh model of ``preset_name`` (None: the default sizes) shaped for ``dataset`` (inputs, vocabulary,
    normalization statistics)."""
    model = WorldActionModel(model_config(preset_name, dataset.features, dataset.tasks, get_suite(dataset.suite),
                                          spec_overrides, **overrides))
    model.normalizer.load_stats(dataset.stats)
    return model


def model_config(preset_name: str | None, features: dict[str, dict[str, Any]], tasks: list[str], suite: Suite,
                 spec_overrides: dict[str, str] | None = None, **overrides: Any) -> ModelConfig:
    """The configuration of a model of ``preset_name`` for data with these features of ``suite``'s ``tasks``: its
    inputs, action size and vocabulary (what a dataset fixes; a benchmark checks an entry's design before it has
    data)."""
    shapes = {k: list(features[k]["shape"]) for k in features if k.startswith("observation.")}
    vocabulary = sorted({w for task in tasks for w in suite.instruction(task).split()})
    fields = {**(preset(preset_name) if preset_name else {}), "tasks": [suite.instruction(t) for t in tasks],
              "suite": suite.name, **overrides}
    if spec_overrides:
        fields["spec"] = WAMSpec(**{**fields.get("spec", WAMSpec()).to_dict(), **spec_overrides})
    if fields.get("spec", WAMSpec()).is_wam and not fields.get("future_offsets", True):
        fields.pop("future_offsets")  # a preset without a future (vla) given a substrate: use the default offsets
    return ModelConfig(observation_shapes=shapes, action_dim=features["action"]["shape"][0], vocabulary=vocabulary,
                       **fields)


def check_compatible(model: WorldActionModel, dataset: LeRobotDataset) -> None:
    """Raise ``ValueError`` naming the first input whose shape differs between the model and the dataset."""
    wanted = {**model.config.observation_shapes, "action": [model.config.action_dim]}
    for key, shape in wanted.items():
        have = dataset.features.get(key, {}).get("shape")
        if have is None:
            raise ValueError(f"the model reads {key!r} but dataset {dataset.root} has no such feature; collect the "
                             "dataset with the track the model was trained on")
        if list(have) != list(shape):
            raise ValueError(f"the model expects {key!r} of shape {list(shape)} but dataset {dataset.root} stores "
                             f"{list(have)}; collect the dataset with matching settings or train from scratch")


def check_same_run(now: dict[str, Any], out: Path) -> None:
    """Refuse to resume ``out`` with options ``now`` that change what is trained (steps, data, preset, ...)."""
    path = out / "train_config.json"
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot resume {out}: {path} is missing or unreadable ({e}); train into a new --out") from None
    # An option added after the run started was at its default there.
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    before = {**defaults, **before}
    changed = sorted(k for k in now if k not in RUNTIME_OPTIONS and json.dumps(before.get(k)) != json.dumps(now[k]))
    if changed:
        diff = ", ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {out} with other options ({diff}); pass the options it was started with "
                         "or train into a new --out")


@torch.no_grad()
def goal_targets(model: WorldActionModel, windows: WindowDataset) -> dict[str, torch.Tensor]:
    """Per task, the mean future target of windows anchored at the demonstrations' last frames (all offsets then
    clamp to the final frame): the goal a rollout coupling's ``goal`` objective steers toward."""
    dataset = windows.dataset
    last = np.array([e["dataset_to_index"] - 1 for e in dataset.episodes])
    positions = np.flatnonzero(np.isin(windows.anchors, last))
    batch = windows.batch(positions)
    _, futures = model.targets(batch)
    task = torch.as_tensor(dataset.frames["task_index"][windows.anchors[positions]], device=model.device)
    goals = {}
    for name, x in futures.items():
        x = model.coupling.as_continuous(name, x)
        goal = torch.zeros(len(model.config.tasks) or 1, *x.shape[1:], device=x.device)
        goal.index_add_(0, task, x)
        goals[name] = goal / torch.bincount(task, minlength=goal.shape[0]).clamp_min(1).view(-1, 1, 1)
    return goals


def train(cfg: TrainConfig, **model_overrides: Any) -> dict[str, Any]:
    """Run training as configured; returns a summary (steps, final loss, wall time, parameter count).

    Under torchrun every process runs this; rank 0 alone writes to ``cfg.out``.
    """
    if cfg.nproc > 1 and not distributed.launched_by_torchrun():
        raise ValueError("--nproc starts processes from the command line (`wam train --nproc N ...`); from Python, "
                         "launch with `torchrun --nproc_per_node=N -m wam.cli train ...`")
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    ranks = distributed.init(resolve_device(cfg.device))
    try:
        with cpu_threads(cfg.threads):
            summary = _train(cfg, ranks, model_overrides)
    except BaseException:
        distributed.finish(ranks, barrier=False)  # the other ranks may never reach a barrier
        raise
    distributed.finish(ranks)
    return summary


def _train(cfg: TrainConfig, ranks: distributed.Ranks, model_overrides: dict[str, Any]) -> dict[str, Any]:
    if cfg.batch_size % ranks.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} must split evenly over {ranks.world_size} processes")
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    dataset = LeRobotDataset.load(cfg.data)
    if cfg.video or cfg.synthetic:
        dataset = combine(dataset, [LeRobotDataset.load(v) for v in cfg.video],
                          [LeRobotDataset.load(d) for d in cfg.synthetic])
    elif not dataset.has_actions:
        raise ValueError(f"{cfg.data} holds no action labels (a video-only dataset); pass it with --video and give "
                         "labelled demonstrations with --data")
    if cfg.suite is not None and cfg.suite != dataset.suite:
        raise ValueError(f"{cfg.data} holds {dataset.suite} demonstrations, not {cfg.suite}; drop --suite or train "
                         f"on a dataset collected with --suite {cfg.suite}")
    out = Path(cfg.out)
    run_options = {**config_dict(cfg), "nproc": ranks.world_size}
    if cfg.resume and (out / "train_summary.json").exists() and (out / "model").exists():
        # Finished: its final model is newer than any checkpoint, which would only retrain the last interval.
        check_same_run(run_options, out)
        print(f"train: {out} has finished its {cfg.steps} steps; nothing to resume")
        return json.loads((out / "train_summary.json").read_text())
    resume_from = latest_checkpoint(out) if cfg.resume else None
    model = prepare_model(cfg, ranks, dataset, resume_from, run_options, model_overrides)
    prepare_time = time.perf_counter() - start
    windows = model.windows(dataset, successful_only=not cfg.include_failed,
                            synthetic_share=cfg.synthetic_share if cfg.synthetic else None)
    latent_report = (label_latent_actions(cfg, model, dataset, ranks.is_main) if cfg.curriculum == "latent-actions"
                     else None)
    video_windows = (model.windows(dataset, video=True, latent_actions=latent_report is not None)
                     if cfg.uses_video else None)
    if ranks.is_main:
        record_run(cfg, out, run_options, model, dataset)
    if cfg.freeze_predictor:
        model.freeze_predictor()
    optimization = Optimization.create(cfg, model)
    first_step, running, elapsed = 1, None, 0.0
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimization.optimizer, optimization.schedule, optimization.ema)
        first_step = state.step + 1
        running, elapsed = state.extra.get("loss_smooth"), state.extra.get("train_time_s", 0.0)
        log.info("resuming %s at step %d", resume_from, state.step)
    start = time.perf_counter() - elapsed
    smooth = run_steps(cfg, ranks, model, (windows, video_windows), optimization, first_step, running, start)
    optimization.ema.copy_to(optimization.trainable)
    model.eval()
    if model.coupling.plans:
        model.coupling.set_goals(goal_targets(model, windows))
    summary = {"preset": cfg.preset, "census": cfg.census, "spec": model.config.spec.to_dict(),
               "steps": cfg.steps, "final_loss_smooth": smooth,
               "train_time_s": time.perf_counter() - start, "substrate_prepare_time_s": prepare_time,
               "parameters": model.num_parameters(), "processes": ranks.world_size,
               "weights_sha256": distributed.weight_digests(model, ranks), "device": str(ranks.device),
               "cpu_threads": torch.get_num_threads(),
               **({"latent_actions": latent_report} if latent_report else {})}
    if ranks.is_main:
        model.save(out / "model")
        atomic_write_json(out / "train_summary.json", summary)
    return summary


def prepare_model(cfg: TrainConfig, ranks: distributed.Ranks, dataset: LeRobotDataset, resume_from: Path | None,
                  run_options: dict[str, Any], model_overrides: dict[str, Any]) -> WorldActionModel:
    """The model to train, on its device with its substrates fitted and its caches added to ``dataset``: from the
    checkpoint being resumed, the run being fine-tuned, or built fresh from the preset, census row and options."""
    device = ranks.device
    if resume_from is not None:
        check_same_run(run_options, Path(cfg.out))
        model = WorldActionModel.load(resume_from / "model", device=device)  # fitted substrates; weights follow
        check_compatible(model, dataset)
    elif cfg.init_from is not None:
        model = WorldActionModel.load(Path(cfg.init_from) / "model", device=device)
        check_compatible(model, dataset)
        check_learns_from_video(cfg, model)
    else:
        spec_overrides = cfg.spec_overrides()
        if cfg.census:
            spec_overrides = {**census_spec(find_row(cfg.census)).to_dict(), **spec_overrides}
        model = build_model(None if cfg.census else cfg.preset, dataset, spec_overrides,
                            **cfg.model_overrides(), **model_overrides)
        check_learns_from_video(cfg, model)  # before the substrates spend minutes fitting
        for substrate in model.substrates.values():  # fit autoencoders, measure statistics
            substrate.fit(dataset, model.config.substrate_fit_steps, cfg.seed)
        model = model.to(device)
    if ranks.distributed:
        distributed.broadcast_state(model)
    model.add_caches(dataset)
    return model


def label_latent_actions(cfg: TrainConfig, model: WorldActionModel, dataset: LeRobotDataset,
                         is_main: bool = True) -> dict[str, Any]:
    """Fit the latent action model on every frame of ``dataset`` (or reuse the one this run fitted before), label
    every frame with its latent action chunk, and report what the latent carries."""
    c = model.config
    config = latent_actions.LatentActionConfig(get_suite(c.suite).image_key, 64, c.horizon, c.action_dim)
    directory = Path(cfg.out) / "latent_actions"
    found = latent_actions.load(directory, config, model.device)
    if found is None:  # every process fits the same model (same seed); one writes it
        print(f"train: fitting the latent action model on {dataset.num_frames} frames ({cfg.latent_action_steps} "
              "steps)")
        lam, report = latent_actions.fit(dataset, config, cfg.latent_action_steps, cfg.seed, device=model.device)
        if is_main:
            latent_actions.save(lam, report, directory)
    else:
        lam, report = found
    dataset.frames[latent_actions.LATENT_ACTION] = latent_actions.label(lam, dataset)

    def normalize(chunks: np.ndarray) -> np.ndarray:
        return model.normalizer.normalize("action", torch.from_numpy(chunks).to(model.device)).cpu().numpy()

    report = {**report, "action_probe_r2": latent_actions.probe_r2(dataset.frames[latent_actions.LATENT_ACTION],
                                                                   dataset, normalize)}
    print(f"train: latent actions predict the next frame with error {report['prediction_mse']:.4f} "
          f"({report['prediction_mse_without_latent']:.4f} without them); a linear map from them explains "
          f"{report['action_probe_r2']:.2f} of the real action chunks' variance")
    return report


def check_learns_from_video(cfg: TrainConfig, model: WorldActionModel) -> None:
    """``ValueError`` saying why, when the model cannot use the video its curriculum gives it."""
    if not cfg.uses_video:
        return
    name = f"preset {cfg.preset}" if cfg.preset and not cfg.census else f"the {model.config.spec.substrate} model"
    why = video_refusal(model, cfg.curriculum)
    if why is not None:
        raise ValueError(f"{name} {why}")


def video_refusal(model: WorldActionModel, curriculum: str) -> str | None:
    """Why ``model`` cannot learn from action-free video under ``curriculum`` (a predicate beginning "cannot ..."),
    or None where it can."""
    if curriculum == "latent-actions":  # the latent action is the action stream's target: any model learns it
        if get_suite(model.config.suite).image_key not in model.config.observation_shapes:
            return ("cannot learn latent actions: latent actions are learned from camera frames and this model reads none; "
                    "collect the data with --track vision")
        return None
    if model.learns_from_video:
        return None
    why = ("it predicts no future, so video has nothing to train (a policy without future streams uses video "
           "through latent actions: --curriculum latent-actions)" if not model.substrates else
           f"its coupling {model.config.spec.coupling.value!r} predicts the future from the action, p(s | c, a), "
           "which video without actions cannot train")
    return (f"cannot use action-free video under --curriculum {curriculum}: {why}; choose --curriculum latent-actions, "
            "or a preset whose coupling is joint or post-head (docs/curricula.md lists them)")


def record_run(cfg: TrainConfig, out: Path, run_options: dict[str, Any], model: WorldActionModel,
               dataset: LeRobotDataset) -> None:
    """Say what is trained on, and write ``train_config.json`` (what a resumed run must match)."""
    failed = sum(not e.get("success", True) for e in dataset.episodes if e.get("actions", True))
    if failed:
        print(f"train: {failed} of {len(dataset.episodes)} episodes of {cfg.data} are failed expert episodes; "
              + ("learning from them too (--include-failed)" if cfg.include_failed else
                 "their windows are skipped (pass --include-failed to learn from them)"))
    kinds = ["labelled"] + ["video"] * len(cfg.video) + ["synthetic"] * len(cfg.synthetic)
    sources = [{"data": str(path), "labelled": kind != "video", "kind": kind,
                "episodes": sum(e.get("source", 0) == i for e in dataset.episodes),
                "frames": sum(e["dataset_to_index"] - e["dataset_from_index"] for e in dataset.episodes
                              if e.get("source", 0) == i)}
               for i, (path, kind) in enumerate(zip([cfg.data, *cfg.video, *cfg.synthetic], kinds))]
    if len(sources) > 1:
        print("train: " + ", ".join(f"{s['data']} {s['episodes']} {s['kind']} episodes" for s in sources)
              + (f" ({cfg.curriculum})" if cfg.video else "")
              + (f"; {cfg.synthetic_share:g} of each batch dreamed" if cfg.synthetic else ""))
    labelled = [e for e in dataset.episodes if e.get("actions", True)]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "train_config.json",
                      {**run_options, "model": model.config.to_dict(), "dataset_frames": dataset.num_frames,
                       "dataset_episodes": len(dataset.episodes), "failed_episodes": failed,
                       "trained_on_episodes": len(labelled) - (0 if cfg.include_failed else failed),
                       "sources": sources})


@dataclass
class Optimization:
    """What the optimizer steps: the trainable parameters, AdamW, its cosine schedule and the weights' EMA."""

    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: Any
    ema: Any

    @classmethod
    def create(cls, cfg: TrainConfig, model: WorldActionModel) -> Optimization:
        from diffusers.optimization import get_cosine_schedule_with_warmup

        trainable = [p for p in model.parameters() if p.requires_grad]
        # fused: one vectorized kernel for all parameters (on a CPU 3 ms per step instead of 15 ms of small
        # per-tensor operations for the default presets' ~90 parameter tensors)
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        if cfg.staged:  # each stage warms up and decays as a run of its own would
            stages = [get_cosine_schedule_with_warmup(optimizer, min(cfg.warmup_steps, n // 2), n)
                      for n in (cfg.video_steps, cfg.steps - cfg.video_steps)]
            schedule = torch.optim.lr_scheduler.SequentialLR(optimizer, stages, milestones=[cfg.video_steps])
        else:
            schedule = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
        return cls(trainable, optimizer, schedule, fresh_ema(cfg, trainable))


def fresh_ema(cfg: TrainConfig, trainable: list[torch.nn.Parameter]) -> Any:
    """An EMA of ``trainable`` starting from their current values, its decay warming up from 0."""
    from diffusers.training_utils import EMAModel

    return EMAModel(trainable, decay=cfg.ema_decay, use_ema_warmup=True, power=0.75, foreach=True)


def run_steps(cfg: TrainConfig, ranks: distributed.Ranks, model: WorldActionModel,
              windows: tuple[WindowDataset, WindowDataset | None], optimization: Optimization, first_step: int,
              running: float | None, start: float) -> float | None:
    """Steps ``first_step..cfg.steps`` over the labelled and the video ``windows`` (None: no video), logging and
    checkpointing on the way; returns the smoothed loss.

    Nothing inside a step waits for the device: the loss, its parts and the finiteness check stay tensors and are
    read on the steps that log or checkpoint (a non-finite loss is reported with the step it first appeared at,
    and no checkpoint of weights it touched is written).
    """
    out = Path(cfg.out)
    trainable, optimizer, schedule, ema = (optimization.trainable, optimization.optimizer, optimization.schedule,
                                           optimization.ema)
    device = ranks.device
    smooth = running
    log_file = open_log(out / "train_log.jsonl", first_step) if ranks.is_main else None
    from torch.utils.tensorboard import SummaryWriter  # imports TensorBoard: only when training

    # TensorBoard: the same figures; a resumed run first drops the events a killed one logged past its checkpoint.
    board = SummaryWriter(out / "tensorboard", purge_step=first_step) if ranks.is_main else None
    last_log = (first_step - 1, time.perf_counter())
    model.train()
    step_model = distributed.wrap(model, ranks)
    name = cfg.census or cfg.preset or model.config.spec.substrate
    batches = Prefetcher(lambda step, rng: step_batches(cfg, ranks, windows, step, rng),
                         lambda step: batch_rng(cfg.seed, ranks.rank, step), range(first_step, cfg.steps + 1),
                         depth=cfg.prefetch, pin=device.type == "cuda")
    bar = tqdm(batches, desc=f"train {name}", unit="step", mininterval=1.0, initial=first_step - 1, total=cfg.steps,
               disable=not ranks.is_main)
    running_loss = None if running is None else torch.tensor(running, device=device)
    first_bad = torch.zeros((), dtype=torch.long, device=device)  # the first step with a non-finite loss, or 0
    for step, (batch, video) in bar:
        if cfg.staged and step == cfg.video_steps + 1:
            # The model the run keeps must be the last stage's: at decay 0.999 the video stage's weights would
            # still make up a fifth of the average after 1500 more steps.
            ema = optimization.ema = fresh_ema(cfg, trainable)
        seed_torch(cfg.seed, ranks.rank, step)  # noise levels, dropout: a resumed run draws what an unbroken one would
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss, info = step_model(batch, step, video)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)  # averaged over ranks: all see a NaN at once
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        first_bad = torch.where(finite | (first_bad > 0), first_bad, step)
        optimizer.step()
        schedule.step()
        ema.step(trainable)
        model.after_step()
        loss = loss.detach().float()
        running_loss = loss if running_loss is None else running_loss * 0.98 + loss * 0.02
        logs = step % cfg.log_every == 0 or step == cfg.steps
        saves = bool(cfg.save_every) and step % cfg.save_every == 0 and step < cfg.steps and ranks.is_main
        if logs or saves or step == cfg.steps:
            check_finite(first_bad, loss)
        if logs:
            value, smooth = (distributed.mean_over_ranks(v.item(), ranks) for v in (loss, running_loss))
            bar.set_postfix(loss=f"{smooth:.4f}")
            now = time.perf_counter()
            figures = {"loss": value, "loss_smooth": smooth, **{k: v.item() for k, v in info.items()},
                       "lr": schedule.get_last_lr()[0], "grad_norm": grad_norm.item(),
                       "samples_per_s": (step - last_log[0]) * cfg.batch_size / max(now - last_log[1], 1e-9)}
            last_log = (step, now)
            if log_file:
                log_file.write(json.dumps({"step": step, **figures, "time_s": now - start}) + "\n")
                log_file.flush()
            if board:
                for key, number in figures.items():
                    board.add_scalar(key if "/" in key else f"train/{key}", number, step)
                board.flush()
        if saves:
            save_checkpoint(out, step, model, optimizer, schedule, ema,
                            {"loss_smooth": running_loss.item(), "train_time_s": time.perf_counter() - start})
            if cfg.keep_checkpoints:
                prune_checkpoints(out, cfg.keep_checkpoints)
    if log_file:
        log_file.close()
    if board:
        board.close()
    return smooth


def step_batches(cfg: TrainConfig, ranks: distributed.Ranks, windows: tuple[WindowDataset, WindowDataset | None],
                 step: int, rng: np.random.Generator) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The labelled and the video windows of ``step`` on this rank (None where the curriculum has none)."""
    labelled, video = windows
    size = cfg.batch_size // ranks.world_size
    if cfg.video_stage(step):  # latent actions stand in for the real ones: the full loss; else the futures alone
        return (video.sample(size, rng), None) if cfg.curriculum == "latent-actions" else (None, video.sample(size, rng))
    if cfg.curriculum == "cotrain" and cfg.video:
        return labelled.sample(size, rng), video.sample(max(1, round(cfg.video_weight * size)), rng)
    return labelled.sample(size, rng), None


def check_finite(first_bad: torch.Tensor, loss: torch.Tensor) -> None:
    """``FloatingPointError`` if a step since the start had a non-finite loss or gradient (``first_bad`` > 0)."""
    bad = int(first_bad.item())
    if bad:
        raise FloatingPointError(f"loss became {loss.item()} at step {bad}; lower --lr or check the dataset "
                                 "statistics in meta/stats.json")


def step_seeds(seed: int, rank: int, step: int) -> np.random.SeedSequence:
    """The seed of ``step`` on ``rank``: randomness is a function of (seed, rank, step) alone, so a resumed run
    draws what an uninterrupted one would."""
    return np.random.SeedSequence((seed, rank, step))


def batch_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """The batch sampler of ``step`` on ``rank``."""
    return np.random.default_rng(step_seeds(seed, rank, step))


def seed_torch(seed: int, rank: int, step: int) -> None:
    """Seed torch's generators (noise levels, dropout) for ``step`` on ``rank``."""
    torch.manual_seed(int(step_seeds(seed, rank, step).generate_state(1, np.uint64)[0] >> 1))


def open_log(path: Path, first_step: int):
    """``train_log.jsonl`` opened for appending from ``first_step``: the lines a killed run logged after its last
    checkpoint are dropped."""
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if json.loads(line)["step"] < first_step] if first_step > 1 and path.exists() else []
    atomic_write_bytes(path, "".join(kept).encode())
    return open(path, "a")
