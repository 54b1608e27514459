"""The noising process shared by denoising backbones, via ``diffusers``: on a DDPM schedule with DDIM sampling,
the network predicts the noise (``epsilon``) or the clean sample (``sample``); or flow matching (``flow``:
``x_s = (1 - s) x_0 + s eps``, target velocity ``eps - x_0``, Euler sampling).

``sample`` is for wide tokens such as raw pixel patches: a noise or velocity target is as wide as the token and full
rank, so a trunk narrower than the token cannot carry it, while the clean sample lies near a low-dimensional set.

Noise levels are floats in ``[0, T]`` (0 = clean): the integer DDPM timestep, or flow time scaled by ``T``.
"""

from __future__ import annotations

from typing import Literal

import torch

Parameterization = Literal["epsilon", "sample", "flow"]
PARAMETERIZATIONS = ("epsilon", "sample", "flow")


class NoiseProcess:
    """Noising for training and one sampler per stream for generation."""

    def __init__(self, train_timesteps: int, parameterization: Parameterization, clip: dict[str, float]):
        from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}")
        self.parameterization, self.train_timesteps = parameterization, train_timesteps
        self.discrete = parameterization != "flow"
        schedule = dict(num_train_timesteps=train_timesteps, beta_schedule="squaredcos_cap_v2",
                        prediction_type=parameterization if self.discrete else "epsilon")
        self.ddpm = DDPMScheduler(**schedule, clip_sample=False)
        if self.discrete:
            # Clipping DDIM's clean estimate keeps the first, nearly pure-noise steps (where the estimate divides by
            # sqrt(alpha_bar) ~ 0.01) from throwing the sample far off the data's range: without it the futures of
            # a trained model came out at 3x their scale after 10 steps and 27x after 50.
            self.samplers = {n: DDIMScheduler(**schedule, clip_sample=c > 0, clip_sample_range=c or 1.0,
                                              set_alpha_to_one=True) for n, c in clip.items()}
        else:
            self.samplers = {n: FlowMatchEulerDiscreteScheduler(num_train_timesteps=train_timesteps) for n in clip}
        self.clip = clip

    def draw(self, b: int, device: torch.device) -> torch.Tensor:
        """Independent training noise levels ``[B]``."""
        if self.discrete:
            return torch.randint(0, self.train_timesteps, (b,), device=device).float()
        return torch.rand(b, device=device) * self.train_timesteps

    def noise(self, x0: torch.Tensor, eps: torch.Tensor, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The noised sample at ``level`` and the regression target (noise, clean sample or velocity)."""
        if self.discrete:
            return self.ddpm.add_noise(x0, eps, level.long()), eps if self.parameterization == "epsilon" else x0
        s = (level.float() / self.train_timesteps).view(-1, *[1] * (x0.ndim - 1))
        return (1 - s) * x0 + s * eps, eps - x0

    def probe_levels(self, n: int) -> list[float]:
        """``n`` fixed levels spanning the schedule, for deterministic likelihood proxies."""
        top = self.train_timesteps - 1 if self.discrete else 0.95 * self.train_timesteps
        return [float(v.round() if self.discrete else v) for v in torch.linspace(0, top, n)]

    def start(self, names, steps: int) -> list[float]:
        """Prepare the samplers of ``names`` for ``steps`` steps; returns the level before each step and after the last."""
        for n in names:
            self.samplers[n].set_timesteps(steps)
        sampler = self.samplers[next(iter(names))]
        if self.discrete:
            return [float(t) for t in sampler.timesteps] + [0.0]
        return [float(s) * self.train_timesteps for s in sampler.sigmas]

    def step(self, name: str, i: int, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        sampler = self.samplers[name]
        return sampler.step(output, sampler.timesteps[i], x).prev_sample

    def finish(self, name: str, x: torch.Tensor) -> torch.Tensor:
        c = self.clip.get(name, 0.0)
        return x.clamp(-c, c) if c else x
