"""How much of a bench entry's fit to its demonstrations carries over to held-out ones: the offline screens on the
training demonstrations beside the same screens on the held-out demonstrations, per trained run of a bench.

At few demonstrations a policy can reproduce its training episodes almost exactly and still miss on new starts;
the ratio of the two action errors says how much of a low closed-loop success is memorisation (a recipe aimed at it,
such as augmentation, should shrink the ratio) rather than a failure to fit. A preset that samples its actions
(diffusion, flow) carries its sampling spread in both errors, so compare ratios between a preset and its recipes,
not across designs. Both screens are ``wam.eval.offline.offline_screens`` with the same seed and window budget;
the held-out data is the one the bench screened the run on (``offline/offline_info.json``), the training data the
one in its ``train_config.json``.

    python benchmarks/fit_gap.py --bench outputs/bench-10-demos [--groups hard very-hard]
                                 [--out results/bench-10-demos/fit_gap.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from wam.data.lerobot import LeRobotDataset
from wam.eval.budget import machine_info
from wam.eval.offline import offline_screens
from wam.io import atomic_write_json
from wam.model import WorldActionModel

SCREEN = "action_mse_executed"  # the error of the actions a chunked deployment executes


def screen(model: WorldActionModel, data: Path) -> float:
    return float(offline_screens(model, LeRobotDataset.load(data))[SCREEN])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, required=True, help="a wam bench --out folder")
    parser.add_argument("--groups", nargs="*", help="the groups to read (default: every group in --bench)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    if not args.bench.is_dir():
        parser.error(f"--bench {args.bench} is not a folder (a wam bench --out folder)")
    groups = args.groups or sorted(p.name for p in args.bench.iterdir() if p.is_dir())
    missing = [g for g in groups if not (args.bench / g).is_dir()]
    if missing:
        parser.error(f"no group {', '.join(missing)} in {args.bench}")
    rows = []
    for group in groups:
        # <group>/<entry>/seed-<s>/run, or with one model per task <group>/<task>/<entry>/seed-<s>/run
        for run in sorted((args.bench / group).glob("**/seed-*/run")):
            heldout_info = run.parent / "offline" / "offline_info.json"
            if not (run / "model").is_dir() or not heldout_info.is_file():
                continue  # a run still training, or not yet screened by its bench
            model = WorldActionModel.load(run / "model")
            train_data = Path(json.loads((run / "train_config.json").read_text())["data"])
            heldout_data = Path(json.loads(heldout_info.read_text())["data"])
            train, heldout = screen(model, train_data), screen(model, heldout_data)
            row = {"group": group, "entry": run.parent.parent.relative_to(args.bench / group).as_posix(),
                   "seed": run.parent.name,
                   f"train_{SCREEN}": train, f"heldout_{SCREEN}": heldout, "ratio": heldout / train}
            rows.append(row)
            print(f"{group:10s} {row['entry']:28s} {row['seed']}  train {train:.4f}  held-out {heldout:.4f}  "
                  f"ratio {heldout / train:5.1f}", flush=True)
    if not rows:
        parser.error(f"no trained and screened run in {args.bench} (a run is screened once its bench evaluated it)")
    if args.out:
        atomic_write_json(args.out, {"screen": SCREEN, "rows": rows, "machine": machine_info(torch.device("cpu"))})


if __name__ == "__main__":
    main()
