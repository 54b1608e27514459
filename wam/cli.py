"""The ``wam`` command line: typed configs (tyro dataclasses), one subcommand per job."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")


def _commands() -> dict[str, type]:
    from wam.data.check import DataConfig
    from wam.data.collect import CollectConfig
    from wam.data.synthetic import SynthesizeConfig
    from wam.eval.bench import BenchConfig
    from wam.eval.config import EvalConfig
    from wam.eval.dream import DreamConfig
    from wam.eval.play import PlayConfig
    from wam.presets.census import CensusConfig
    from wam.quickstart import QuickstartConfig
    from wam.train.loop import TrainConfig

    return {"quickstart": QuickstartConfig, "census": CensusConfig, "collect": CollectConfig,
            "data": DataConfig, "train": TrainConfig, "eval": EvalConfig, "dream": DreamConfig, "play": PlayConfig,
            "synthesize": SynthesizeConfig, "bench": BenchConfig}


def run(cfg: Any) -> Any:
    """Dispatch a parsed config to its job."""
    from wam.data.check import DataConfig, run_data
    from wam.data.collect import CollectConfig, run_collect
    from wam.data.synthetic import SynthesizeConfig, run_synthesize
    from wam.eval import run_eval
    from wam.eval.bench import BenchConfig, run_bench, train_bench
    from wam.eval.config import EvalConfig
    from wam.eval.dream import DreamConfig, print_dream, run_dream
    from wam.eval.play import PlayConfig, run_play
    from wam.presets.census import CensusConfig, run_census
    from wam.quickstart import QuickstartConfig, run_quickstart
    from wam.train.loop import TrainConfig, train

    if isinstance(cfg, CensusConfig):
        return run_census(cfg)
    if isinstance(cfg, CollectConfig):
        info = run_collect(cfg)
        print(f"{cfg.out}: {info['total_episodes']} episodes, {info['total_frames']} frames")
        return info
    if isinstance(cfg, DataConfig):
        return run_data(cfg)
    if isinstance(cfg, TrainConfig):
        summary = train(cfg)
        print(f"{cfg.out}/model: {summary['parameters'] / 1e6:.2f} M parameters, {summary['steps']} steps in "
              f"{summary['train_time_s']:.0f} s, final loss {summary['final_loss_smooth']:.4f}")
        return summary
    if isinstance(cfg, EvalConfig):
        from wam.eval.report import print_offline, print_report, print_sweep

        info = run_eval(cfg)
        if cfg.offline:
            print_offline(info)
            print(f"wrote {cfg.out}/offline_info.json")
        elif cfg.sweep:
            print_sweep(info)
            print(f"wrote {cfg.out}/sweep.json and {cfg.out}/sweep.png")
        else:
            print_report(info)
            print(f"wrote {cfg.out}/eval_info.json")
        return info
    if isinstance(cfg, BenchConfig):
        if cfg.train_only:
            runs = train_bench(cfg)
            print(f"{len(runs)} runs trained under {cfg.out}; the same bench without --train-only evaluates them")
            return runs
        board = run_bench(cfg)
        print(f"wrote {board['results']}/leaderboard.json and report.html")
        return board
    if isinstance(cfg, QuickstartConfig):
        return run_quickstart(cfg)
    if isinstance(cfg, DreamConfig):
        info = run_dream(cfg)
        print_dream(info)
        print(f"wrote {cfg.out}/dream.mp4 and {cfg.out}/dream_info.json")
        return info
    if isinstance(cfg, PlayConfig):
        return run_play(cfg)
    if isinstance(cfg, SynthesizeConfig):
        info = run_synthesize(cfg)
        print(f"{cfg.out}: {info['total_episodes']} dreamed episodes, {info['total_frames']} frames")
        return info
    raise TypeError(f"no job for {type(cfg).__name__}")


def list_shifts(args: list[str]) -> int:
    """``wam eval --list-shifts [--suite S]``: the suite's factors of variation and their levels."""
    from wam.envs import DEFAULT_SUITE, get_suite
    from wam.envs.variation import describe_factors
    from wam.options import OptionError

    suite = args[args.index("--suite") + 1] if "--suite" in args[:-1] else DEFAULT_SUITE
    try:
        print(describe_factors(suite, get_suite(suite).factors))
    except OptionError as e:
        print(f"wam: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wam`` command; user errors end with one line on stderr and exit code 2, a
    ``wam data check`` that finds problems exits with 1."""
    import tyro

    from wam.data.lerobot import DatasetError
    from wam.eval.lockstep import EnvironmentWorkerError
    from wam.model import CheckpointError
    from wam.options import OptionError

    warnings.filterwarnings("ignore", message="Constant.*may be too high")  # MetaWorld's experts, harmless
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["eval"] and "--list-shifts" in args:  # a listing, before tyro asks for the run to evaluate
        return list_shifts(args)
    try:  # building the config checks every option against its declared bounds (wam.options)
        cfg = tyro.extras.subcommand_cli_from_dict(_commands(), args=argv, prog="wam",
                                                   description="World Action Models: collect, train, evaluate, compare.")
    except OptionError as e:
        print(f"wam: error: {e}", file=sys.stderr)
        return 2
    from wam.train import distributed
    from wam.train.loop import TrainConfig

    if isinstance(cfg, TrainConfig) and cfg.nproc > 1 and not distributed.launched_by_torchrun():
        return distributed.relaunch(cfg.nproc, list(sys.argv[1:] if argv is None else argv))
    try:
        result = run(cfg)
    except (ValueError, OptionError, DatasetError, CheckpointError, FloatingPointError, FileNotFoundError,
            EnvironmentWorkerError) as e:
        print(f"wam: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only or foreign directory
        print(f"wam: error: cannot write or read {e.filename or ''}: {e.strerror or e}; free disk space or choose a "
              "writable --out (finished work is kept: re-run the same command, with --resume for training)",
              file=sys.stderr)
        return 2
    from wam.data.check import DataConfig

    return 1 if isinstance(cfg, DataConfig) and result else 0


if __name__ == "__main__":
    sys.exit(main())
