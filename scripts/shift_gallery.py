"""Draw every factor of variation of a suite at every level into one picture (docs/shifts.png).

    python scripts/shift_gallery.py [--suite metaworld] [--task push-v3] [--seed 3] [--size 128] [--hold 35]
                                    [--out docs/shifts.png]
    python scripts/shift_gallery.py --suite pusht --task pusht --hold 16 --out docs/shifts-pusht.png

Rows: the suite's factors; columns: unshifted, then each level. Each frame is the camera image after the
displacement step has passed (the arm held still), from the same seeded start, so only the factor differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wam.envs import get_suite
from wam.envs.variation import LEVELS


def frame(suite, task: str, shift: str, seed: int, size: int, hold: int) -> np.ndarray:
    env = suite.make_env(task, image_size=size, shift=shift)
    try:
        observation, _ = env.reset(seed=seed)
        for _ in range(hold):  # the robot told to do nothing (no key pressed, in `wam play`'s terms)
            observation, *_ = env.step(suite.teleop_action(observation[suite.state_key], np.zeros(4)))
        return env.render()
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="metaworld")
    parser.add_argument("--task", default="push-v3")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--hold", type=int, default=35, help="control steps the arm holds still before the frame")
    parser.add_argument("--out", type=Path, default=Path("docs/shifts.png"))
    args = parser.parse_args()
    suite = get_suite(args.suite)
    label, pad = 90, 16
    columns = ["none", *LEVELS]
    sheet = Image.new("RGB", (label + len(columns) * args.size, pad + len(suite.factors) * args.size), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((label + c * args.size + 4, 2), name, fill="black")
    for r, factor in enumerate(suite.factors):
        draw.text((4, pad + r * args.size + args.size // 2 - 6), factor, fill="black")
        for c, level in enumerate(columns):
            shift = "none" if level == "none" else f"{factor}={level}"
            image = frame(suite, args.task, shift, args.seed, args.size, args.hold)
            sheet.paste(Image.fromarray(image), (label + c * args.size, pad + r * args.size))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
