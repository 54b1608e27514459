"""Two bench entries compared start by start: on how many evaluation starts one succeeds where the other fails.

Two entries of a protocol bench are evaluated on the same starts (the same evaluation seeds per task and training
seed), so their difference is measured better paired than as two independent rates: the starts where both succeed
or both fail say nothing about which is better, and the others are a coin that should land evenly if the entries
are equally good. The p-value is the exact McNemar test, the two-sided binomial test of the starts only A wins
against those only B wins at one half (``scipy.stats.binomtest``). The entries may come from different results
folders (a recipe beside its preset's record, another number of demonstrations); starts that are not in both are
refused rather than dropped. With ``--coverage`` (a ``benchmarks/coverage.py --out`` file of A's bench) the pairs
are also split into the starts near and far from the demonstrations, as that script splits them.

    python benchmarks/paired.py results/bench-10-demos-video:flare results/bench-10-demos-video:flare+video-5x
                                [--groups hard] [--seeds 0] [--coverage results/bench-10-demos-video/coverage.json] [--out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from wam.eval.bench import recorded_episodes
from wam.io import atomic_write_json

Start = tuple[int, str, int]
"""(training seed, task, evaluation seed)"""


def parse_side(text: str) -> tuple[Path, str]:
    """``RESULTS:ENTRY`` as the results folder and the entry."""
    results, colon, entry = text.rpartition(":")
    if not colon or not results or not entry:
        raise argparse.ArgumentTypeError(f"{text!r} is not RESULTS:ENTRY (e.g. results/bench-10-demos:flare)")
    return Path(results), entry


def outcomes(results: Path, entry: str, group: str) -> dict[Start, bool]:
    """Start -> success of ``entry``'s recorded episodes in ``group``; ``ValueError`` saying what is missing."""
    if not (results / "records" / group).is_dir():
        raise ValueError(f"no records of group {group} in {results}")
    episodes = recorded_episodes(results, group).get(entry)
    if episodes is None:
        raise ValueError(f"no records of {entry} in group {group} of {results}")
    return {(e["training_seed"], e["task"], e["seed"]): bool(e["success"]) for e in episodes}


def compare(a: dict[Start, bool], b: dict[Start, bool]) -> dict:
    """Both entries' successes on the same starts, the discordant starts and the exact McNemar p-value."""
    only_a, only_b = sum(a[k] and not b[k] for k in a), sum(b[k] and not a[k] for k in a)
    return {"starts": len(a), "success_a": float(np.mean(list(a.values()))),
            "success_b": float(np.mean([b[k] for k in a])), "only_a": only_a, "only_b": only_b,
            "both": sum(a[k] and b[k] for k in a),
            "p_mcnemar": binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0}


def near_starts(coverage: Path, group: str) -> set[tuple[str, int]]:
    """The (task, evaluation seed) starts in the near half of the demonstrations' split of a coverage file."""
    try:
        distances = json.loads(coverage.read_text())["distances_m"][group]["demonstrations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{coverage} is not a coverage.py --out file with group {group} "
                         f"({type(e).__name__}: {e})") from None
    return {(task, int(seed)) for task, by_seed in distances.items()
            for seed, d in by_seed.items() if d <= np.median(list(by_seed.values()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=parse_side, help="RESULTS:ENTRY, the first entry (a wam bench --results folder)")
    parser.add_argument("b", type=parse_side, help="RESULTS:ENTRY, the second entry")
    parser.add_argument("--groups", nargs="*", help="the groups to compare (default: every group A recorded)")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="the training seeds to compare (default: every seed recorded, which must be both sides')")
    parser.add_argument("--coverage", type=Path, help="a coverage.py --out file: pairs split near / far as well")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()

    (results_a, entry_a), (results_b, entry_b) = args.a, args.b
    if not (results_a / "records").is_dir():
        parser.error(f"{results_a} holds no records/ (a wam bench --protocol --results folder)")
    groups = args.groups or sorted(p.name for p in (results_a / "records").iterdir() if p.is_dir())
    rows = []
    for group in groups:
        try:
            a, b = outcomes(results_a, entry_a, group), outcomes(results_b, entry_b, group)
            if args.seeds:
                a, b = ({k: v for k, v in side.items() if k[0] in args.seeds} for side in (a, b))
                if not a:
                    raise ValueError(f"no records of {entry_a} at training seeds {args.seeds} in group {group}")
            near = near_starts(args.coverage, group) if args.coverage else None
        except ValueError as e:
            parser.error(str(e))
        if a.keys() != b.keys():
            parser.error(f"{entry_a} and {entry_b} were not evaluated on the same starts in {group}: "
                         f"{len(a.keys() - b.keys())} only in A, {len(b.keys() - a.keys())} only in B (training "
                         f"seeds {sorted({k[0] for k in a})} against {sorted({k[0] for k in b})}; --seeds chooses)")
        parts = {"all": set(a)}
        parts |= {task: {k for k in a if k[1] == task} for task in sorted({k[1] for k in a})}
        if near is not None:
            parts |= {"near": {k for k in a if k[1:] in near}, "far": {k for k in a if k[1:] not in near}}
        print(f"\n{group}: A = {entry_a} ({results_a}), B = {entry_b} ({results_b})")
        print("| starts | n | A % | B % | only A | only B | both | McNemar p |")
        print("|---|---|---|---|---|---|---|---|")
        for name, keys in parts.items():
            row = {"group": group, "starts_of": name, "a": f"{results_a}:{entry_a}", "b": f"{results_b}:{entry_b}",
                   **compare({k: a[k] for k in keys}, {k: b[k] for k in keys})}
            rows.append(row)
            print(f"| {name.removesuffix('-v3')} | {row['starts']} | {100 * row['success_a']:.1f} | "
                  f"{100 * row['success_b']:.1f} | {row['only_a']} | {row['only_b']} | {row['both']} | "
                  f"{row['p_mcnemar']:.3f} |")
    if args.out:
        atomic_write_json(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
