"""Evaluation: closed loop (``runner``), the offline screens (``offline``) and the fidelity-latency sweep
(``sweep``), three modes of one ``EvalConfig`` (``config``) that do not import each other; ``run_eval`` picks."""

from __future__ import annotations

from typing import Any


def run_eval(cfg) -> dict[str, Any]:
    """Run the evaluation ``cfg`` (an ``EvalConfig``) asks for; writes and returns ``sweep.json``,
    ``offline_info.json`` or ``eval_info.json``."""
    if cfg.sweep:
        from wam.eval.sweep import run_sweep

        return run_sweep(cfg)
    if cfg.offline:
        from wam.eval.offline import run_offline

        return run_offline(cfg)
    from wam.eval.runner import run_closed_loop

    return run_closed_loop(cfg)
