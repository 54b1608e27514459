"""Training windows over the episodes of a dataset.

Every frame ``t`` of every episode anchors one window (indices are frames within one episode; nothing crosses an
episode boundary):

- observation history: frames ``t - n_obs + 1 .. t``; before the episode start the first frame is repeated;
- action chunk: actions ``a_t .. a_{t+H-1}``; past the episode end the last action is repeated and
  ``action_is_pad`` marks those steps;
- future targets: the ``future_keys`` features (by default the observations) at ``t + k`` for every ``k`` in
  ``future_offsets`` (with ``H = max(future_offsets)`` the last one lies at the end of the chunk), clamped to the
  episode's last frame, as ``future.<key>``; ``future.progress`` is the episode progress in [0, 1] at those frames;
- ``anchor.<key>``: the ``anchor_keys`` features at ``t`` itself (e.g. ground truth a flow is measured from).

Windows for the action (the default) cover the episodes that carry action labels (in a mixture, those of the
labelled and the synthetic datasets: ``wam.data.mixture``), by default only the successful ones; with a
``synthetic_share`` that fraction of every sampled batch comes from the dreamed episodes. Video windows
(``video=True``) cover every recorded episode, failed attempts and action-free video included (not dreamed ones:
the world model does not learn its own dreams), and hold no action: they train the future streams alone, or with
``anchor.latent_action`` the whole model on each frame's latent action (``wam.data.latent_actions``).

Windows are built for a whole batch of anchors at once with numpy indexing, which keeps a CPU training step
dominated by the network and not by Python. Values are raw (uint8 images, physical units); the model's
``Normalizer``, filled from ``meta/stats.json``, scales them, so training and deployment share one code path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from wam.data.lerobot import DatasetError, LeRobotDataset
from wam.envs import get_suite


class WindowDataset(torch.utils.data.Dataset):
    """Windows (history, action chunk, future targets, instruction) over a ``LeRobotDataset``."""

    def __init__(self, dataset: LeRobotDataset, observation_keys: Sequence[str], n_obs: int, horizon: int,
                 future_offsets: Sequence[int] = (), future_keys: Sequence[str] | None = None,
                 anchor_keys: Sequence[str] = (), successful_only: bool = True, video: bool = False,
                 synthetic_share: float | None = None):
        future_keys = list(observation_keys if future_keys is None else future_keys)
        needed = dict.fromkeys([*observation_keys, *([] if video else ["action"]),
                                *(future_keys if future_offsets else []), *anchor_keys])
        missing = [k for k in needed if k != "progress" and k not in dataset.frames]
        if missing:
            raise DatasetError(f"dataset {dataset.root} has no feature {missing[0]!r} (it has: "
                               f"{', '.join(k for k in dataset.features if not k.startswith(('index', 'frame')))}); "
                               "collect it with the track this model expects (--track vision|state)")
        self.dataset, self.observation_keys = dataset, list(observation_keys)
        self.n_obs, self.horizon, self.future_offsets = n_obs, horizon, list(future_offsets)
        self.future_keys, self.anchor_keys, self.video = future_keys, list(anchor_keys), video
        episodes = ([e for e in dataset.episodes if not e.get("synthetic")] if video else
                    [e for e in dataset.episodes if e.get("actions", True) and
                     (e.get("success", True) or not successful_only)])
        lacks = dataset.info.get("wam", {}).get("synthetic_lacks", [])
        unknown = [k for k in needed if k in lacks]
        if unknown and any(e.get("synthetic") for e in episodes):
            raise DatasetError(f"dreamed episodes hold no {unknown[0]!r} (a dream has no simulator to measure it), and "
                               "this model learns from it; train it without --synthetic")
        if not episodes:
            raise DatasetError(f"dataset {dataset.root} holds no successful episode to learn from (its "
                               f"{len(dataset.episodes)} episodes are failed expert episodes; --include-failed learns "
                               "from them anyway)")
        self._start, self._end = dataset.episode_bounds()
        anchors, dreamed = [], []
        for e in episodes:
            lo, hi = e["dataset_from_index"], e["dataset_to_index"]
            anchors.append(np.arange(lo, hi))
            dreamed.append(np.full(hi - lo, bool(e.get("synthetic"))))
        self.anchors, dreamed = np.concatenate(anchors), np.concatenate(dreamed)
        # With a share, batches draw from the dreamed and the recorded windows apart (both must exist).
        self._pools = ((np.flatnonzero(~dreamed), np.flatnonzero(dreamed), synthetic_share)
                       if synthetic_share is not None and dreamed.any() and not dreamed.all() else None)
        suite = get_suite(dataset.suite)
        self.instructions = np.array([suite.instruction(t) for t in dataset.tasks])

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | list[str]]:
        return self.batch(np.array([i]))

    def batch(self, positions: np.ndarray) -> dict[str, torch.Tensor | list[str]]:
        """The windows anchored at ``self.anchors[positions]``, stacked along a leading batch dimension."""
        t = self.anchors[positions]
        start, last = self._start[t][:, None], self._end[t][:, None] - 1
        history = np.clip(t[:, None] + np.arange(-self.n_obs + 1, 1), start, last)
        chunk = t[:, None] + np.arange(self.horizon)
        frames = self.dataset.frames
        out: dict[str, torch.Tensor | list[str]] = {}
        for key in self.observation_keys:
            out[key] = torch.from_numpy(frames[key][history])
        if self.future_offsets:
            future = np.clip(t[:, None] + np.array(self.future_offsets), start, last)
            for key in self.future_keys:
                if key == "progress":
                    out["future.progress"] = torch.from_numpy(((future - start) / np.maximum(last - start, 1))
                                                              .astype(np.float32))
                else:
                    out[f"future.{key}"] = torch.from_numpy(frames[key][future])
        for key in self.anchor_keys:
            out[f"anchor.{key}"] = torch.from_numpy(frames[key][t])
        if not self.video:
            out["action"] = torch.from_numpy(frames["action"][np.minimum(chunk, last)])
            out["action_is_pad"] = torch.from_numpy(chunk > last)
        out["task"] = self.instructions[frames["task_index"][t]].tolist()
        return out

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor | list[str]]:
        """A batch of windows at uniformly random anchors (with a synthetic share: a dreamed window with that
        probability, else a recorded one)."""
        if self._pools is None:
            return self.batch(rng.integers(0, len(self.anchors), batch_size))
        recorded, dreamed, share = self._pools
        from_dream = rng.random(batch_size) < share
        return self.batch(np.where(from_dream, dreamed[rng.integers(0, len(dreamed), batch_size)],
                                   recorded[rng.integers(0, len(recorded), batch_size)]))
