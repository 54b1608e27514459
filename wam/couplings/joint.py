"""Joint generation: ``p(s, a | c)``, trained with ``L = lambda_gen L_gen + lambda_act(step) L_act``.

Future and action streams are learned together and read each other (sequential backbones serialize the action
first, so ``p(a | c) p(s | a, c)``). In a fraction ``future_dropout`` of the samples the future is hidden from
the action, so the same weights can act without it. ``lambda_act`` can follow a substrate-first schedule: 0 for
``substrate_first_steps`` steps, then a linear ramp to 1 over as many steps (the world model learns first).

At inference the future stream is generated fully (``predict``: denoised together with the action), truncated
(``truncate``: it gets only ``truncate_steps`` of the sampler steps and the action reads it partly denoised) or
skipped (``skip``: never computed).

Both couplings learn from action-free video: its windows train the future streams alone, which then read no
action, ``p(s | c)`` (for the post-head coupling that is exactly its future model; for the joint one the future
learns to predict without the action's tokens, as it must when the action is hidden from it).
"""

from __future__ import annotations

from torch import nn

from wam.couplings.base import ACTION, BaseCoupling, dropout_mask


class Joint(BaseCoupling):
    learns_from_video = True
    infers_actions = True

    def __init__(self, futures: tuple[str, ...], future_weight: float = 1.0, future_dropout: float = 0.5,
                 truncate_steps: int = 2, substrate_first_steps: int = 0):
        super().__init__(futures)
        self.future_weight, self.future_dropout = future_weight, future_dropout
        self.truncate_steps, self.substrate_first_steps = truncate_steps, substrate_first_steps

    @property
    def has_future_stream(self) -> bool:
        return True

    @property
    def reads(self):
        return {ACTION: self.futures, **{f: (ACTION,) for f in self.futures}}

    @property
    def order(self):
        return (ACTION, *self.futures)

    def action_weight(self, step: int | None) -> float:
        """``lambda_act`` at ``step`` (1 when no schedule or outside training)."""
        if not self.substrate_first_steps or step is None:
            return 1.0
        return min(1.0, max(0.0, (step - self.substrate_first_steps) / self.substrate_first_steps))

    def loss(self, backbone, context, action, futures, step=None, labels=None):
        hide = dropout_mask(self.futures, self.future_dropout, context)
        losses = backbone.loss(context, {**futures, ACTION: action}, hide=hide)
        weight = self.action_weight(step)
        return {n: v * (weight if n.startswith(ACTION) else self.future_weight) for n, v in losses.items()}

    def video_loss(self, backbone, context, futures):
        return {n: self.future_weight * v for n, v in backbone.loss(context, futures).items()}

    def _actor(self, backbone):
        """What samples the action: the backbone's action stream."""
        return backbone

    def inverse(self, backbone, context, futures, call, generator=None):
        # In distribution: training noises every stream at its own level, so the action also learns beside a clean
        # future (a serial backbone must place the action after the future: WorldActionModel.inverse checks).
        return self._actor(backbone).sample(context, (ACTION,), call.steps, given=futures, generator=generator)[ACTION]

    def inverse_loss(self, backbone, context, action, futures):
        return self._actor(backbone).loss(context, {ACTION: action}, futures)  # the futures given clean

    def act(self, backbone, context, call, generator=None, task=None):
        if call.future == "skip":
            return backbone.sample(context, (ACTION,), call.steps, generator=generator)[ACTION], {}
        partial = {f: self.truncate_steps for f in self.futures} if call.future == "truncate" else None
        out = backbone.sample(context, (*self.futures, ACTION), call.steps, generator=generator, partial=partial,
                              lengths=call.lengths)
        return out.pop(ACTION), out

    def predict(self, backbone, context, call, actions=None, generator=None):
        given = None if actions is None else {ACTION: actions}
        out = backbone.sample(context, self.futures if given else (*self.futures, ACTION), call.steps, given=given,
                              generator=generator, lengths=call.lengths)
        return {f: out[f] for f in self.futures}


class PostHead(Joint):
    """Post-prediction head: ``p(s | c) q(a | s, c)``: the action reads the predicted future, never the reverse.

    ``predict`` imagines the future first (all sampler steps, or ``truncate_steps`` with ``truncate``) and then
    generates the action given it; ``skip`` acts without computing the future (Fast-WAM's fast path).

    With a ``head`` (a separate inverse-dynamics network, UniPi's design) the backbone learns only the future and
    the head learns the action from the context and the *true* future (teacher forcing; hidden in a fraction
    ``future_dropout`` of the samples), then reads the predicted one at inference. The predictor can then be
    frozen while only the head trains (``wam train --freeze-predictor``).
    """

    def __init__(self, *args, head: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = head

    @property
    def reads(self):
        return {} if self.head is not None else {ACTION: self.futures}

    @property
    def acts_from_backbone(self) -> bool:
        return self.head is None

    @property
    def order(self):
        return (*self.futures, ACTION)

    def _actor(self, backbone):
        """The separate head, or the backbone's action stream."""
        return self.head if self.head is not None else backbone

    def loss(self, backbone, context, action, futures, step=None, labels=None):
        if self.head is None:
            return super().loss(backbone, context, action, futures, step)
        losses = {n: self.future_weight * v for n, v in backbone.loss(context, futures).items()}
        hide = dropout_mask(self.futures, self.future_dropout, context)
        losses[ACTION] = self.action_weight(step) * self.head.loss(context, {ACTION: action}, futures, hide)[ACTION]
        return losses

    def act(self, backbone, context, call, generator=None, task=None):
        actor = self._actor(backbone)
        if call.future == "skip":
            return actor.sample(context, (ACTION,), call.steps, generator=generator)[ACTION], {}
        future_steps = self.truncate_steps if call.future == "truncate" else call.steps
        futures = backbone.sample(context, self.futures, future_steps, generator=generator, lengths=call.lengths)
        action = actor.sample(context, (ACTION,), call.steps, given=futures, generator=generator)[ACTION]
        return action, futures

    def predict(self, backbone, context, call, actions=None, generator=None):
        if actions is not None:
            raise ValueError("coupling 'post-head' predicts p(s|c), not p(s|c,a); action-conditioned prediction needs "
                             "coupling 'rollout' or 'joint'")
        return backbone.sample(context, self.futures, call.steps, generator=generator, lengths=call.lengths)
