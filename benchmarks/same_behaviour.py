"""Does this checkout behave exactly as an older commit on MetaWorld? Demonstrations, training and evaluation.

Checks out ``--baseline`` into a temporary worktree and runs the same small jobs with both codes (this venv, the
baseline's code first on ``PYTHONPATH``): a 2 x 2 vision-track collection, 30 training steps of each preset on the
baseline's dataset, and 2 closed-loop episodes of the first preset's baseline weights. Prints and writes
(``--out``, JSON) whether the frames, the weights and the episodes are identical, and what the metadata adds.
Takes about 2 minutes on 2 CPU cores. For refactors: a change meant to keep behaviour must keep all three.
    usage: python benchmarks/same_behaviour.py --baseline COMMIT [--presets vla fast-wam] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from safetensors.torch import load_file

from wam.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
TASKS = "button-press-topdown-v3,drawer-open-v3"


def wam(code: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(code)}
    # Run outside any checkout: `python -m` puts the working directory first on sys.path, before PYTHONPATH.
    subprocess.run([sys.executable, "-m", "wam.cli", *args], env=env, check=True, capture_output=True, text=True,
                   cwd=tempfile.gettempdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--presets", nargs="+", default=["vla", "fast-wam"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            codes = {"baseline": baseline, "this": ROOT}
            for name, code in codes.items():
                wam(code, "collect", "--tasks", TASKS, "--episodes", "2", "--out", str(tmp / name / "data"),
                    "--workers", "1")
                for preset in args.presets:  # both train on the baseline's dataset
                    wam(code, "train", "--preset", preset, "--data", str(tmp / "baseline/data" if name == "this"
                                                                          else tmp / name / "data"),
                        "--out", str(tmp / name / preset), "--steps", "30", "--threads", "1")
                wam(code, "eval", "--run", str(tmp / "baseline" / args.presets[0]) if name == "this" else
                    str(tmp / name / args.presets[0]), "--tasks", TASKS.split(",")[1], "--episodes", "2",
                    "--max-steps", "40", "--out", str(tmp / name / "eval"))
            # The baseline's runs live inside its worktree's temporary directory; "this" reads them from there.
            report = compare(tmp, args.presets)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False,
                           capture_output=True)
    report["baseline"] = args.baseline
    print(json.dumps(report, indent=1))
    if args.out:
        atomic_write_json(args.out, report)


def compare(tmp: Path, presets: list[str]) -> dict:
    a, b = tmp / "baseline", tmp / "this"
    frames = pq.read_table(a / "data/data/chunk-000/file-000.parquet").equals(
        pq.read_table(b / "data/data/chunk-000/file-000.parquet"))
    info_a, info_b = (json.loads((d / "data/meta/info.json").read_text()) for d in (a, b))
    weights = {}
    for preset in presets:
        wa, wb = (load_file(d / preset / "model/model.safetensors") for d in (a, b))
        weights[preset] = wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)
    episodes_a, episodes_b = ([{k: v for k, v in e.items() if k != "time_s"} for e in
                               json.loads((d / "eval/eval_info.json").read_text())["per_episode"]] for d in (a, b))
    return {"frames_identical": frames,
            "info_differences": {k: (info_a.get(k), info_b.get(k)) for k in info_a.keys() | info_b.keys()
                                 if info_a.get(k) != info_b.get(k)},
            "weights_identical": weights, "episodes_identical": episodes_a == episodes_b}


if __name__ == "__main__":
    main()
