"""Recipes: named changes to how any preset is trained or deployed, measured side by side with the plain preset.

A recipe changes the demonstrations (collected under randomized factors of variation: domain randomization, or
in a variant of the bench's suite that adds a camera), the data beside them (action-free video), the model's
training (augmentation) or its deployment (test-time adaptation, the planner's search, the sampler's steps), never
the 4-tuple. An entry whose recipes change only the deployment trains nothing of its own: it evaluates the run of the
entry without them.
``wam bench --presets vla vla+colour-jitter`` trains and evaluates both in one run; the leaderboard row of an
entry names its recipes. The levers of the generalization benchmark (docs/generalization.md) are recipes, so that
what wins can be kept as one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from wam.presets.models import PRESETS


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    collect_shift: str = "none"
    """The demonstrations are collected under this shift (``wam collect --shift``); ``none``: the plain ones."""
    collect_suite: str | None = None
    """The demonstrations come from this variant of the bench's suite (its tasks, more cameras); the model records
    it and is evaluated in it. None: the bench's suite."""
    collect_image_size: int | None = None
    """The demonstrations are rendered at this image size (side in pixels); the model reads images of it and is
    evaluated at it. None: the suite's default size."""
    model: dict[str, Any] = field(default_factory=dict)
    """``ModelConfig`` fields the recipe sets for training (augmentation)."""
    video_per_demo: int = 0
    """Action-free expert videos (``wam collect --no-actions``) per demonstration of each task join training: the
    same scenes at seeds the demonstrations do not use, so placements they do not show. 0: none."""
    video_shift: str = "none"
    """The action-free video is collected under this shift (``wam collect --shift``), the demonstrations staying as
    they are; ``none``: the scenes as the bench evaluates them."""
    video_curriculum: Literal["cotrain", "latent-actions"] = "cotrain"
    """How the video enters training (``wam train --curriculum``); latent-actions spends the first half of the steps
    on the video stage."""
    steps_factor: int = 1
    """Training runs this many times the bench's steps (the learning-rate schedule stretched to match)."""
    deploy: dict[str, Any] = field(default_factory=dict)
    """``DeploymentConfig`` fields the recipe sets for every evaluation (test-time adaptation), each written out so
    that the recipe stays what its description says when the deployment defaults change."""
    planner: dict[str, Any] = field(default_factory=dict)
    """``PlannerOverrides`` fields the recipe sets for every evaluation of a rollout coupling's search (``wam eval
    --planner.*``); a preset that does not plan is refused."""
    inference_steps: int | None = None
    """Sampler steps per model call at every evaluation (``wam eval --inference-steps``) instead of the model's; a
    preset that samples nothing in steps is refused. None: the model's."""

    @property
    def deployment_only(self) -> bool:
        """Whether the recipe changes the deployment alone (so the entry shares the run trained without it)."""
        return (bool(self.deploy or self.planner or self.inference_steps) and not self.model and self.steps_factor == 1
                and not self.video_per_demo and not changes_collection(self))


APPEARANCE_UP_TO_MEDIUM = "camera=up-to-medium,lighting=up-to-medium,colour=up-to-medium,distractors=up-to-medium"
_RECIPES = (
    Recipe("randomized", "demonstrations collected under every appearance factor (camera, lighting, colour, "
           "distractors), each drawn per episode up to its middle level: domain randomization",
           collect_shift=APPEARANCE_UP_TO_MEDIUM),
    Recipe("randomized-placement", "demonstrations whose object and goal placement is drawn per episode up to the "
           "placement factor's middle level past the suite's training range: the range the demonstrations cover "
           "widened, so placement=medium lies inside it and placement=strong still past it",
           collect_shift="placement=up-to-medium"),
    Recipe("randomized-displacement", "demonstrations in which the key object jumps once mid-episode by up to the "
           "displacement factor's middle level, on the tasks whose key object lies loose (the others' are plain): the "
           "expert follows the object to its new place, so the demonstrations show the arm reacting to a move",
           collect_shift="displacement=up-to-medium"),
    Recipe("wrist-camera", "a second camera on the hand (MetaWorld's gripperPOV, the metaworld-wrist suite) beside "
           "corner2: the eye-in-hand view moves with the arm, so a change of the fixed camera's pose leaves it as it was",
           collect_suite="metaworld-wrist"),
    Recipe("image-84", "demonstrations and evaluation at 84x84 images instead of the suite's 64x64 (the size of "
           "Diffusion Policy's and DP3's MetaWorld images): small objects cover more pixels, and MetaWorld's goal "
           "marker one to three instead of one or none",
           collect_image_size=84),
    Recipe("image-128", "demonstrations and evaluation at 128x128 images instead of the suite's 64x64: MetaWorld's "
           "goal marker, all that shows a goal placed at random, covers three to seven pixels instead of one or none",
           collect_image_size=128),
    Recipe("spatial-tokens", "each image read as a 4x4 grid of 16 context tokens from the encoder's last feature map "
           "instead of the preset's (one pooled vector by default): where things are in the image reaches the backbone as "
           "token positions",
           model={"image_tokens": 16}),
    Recipe("spatial-softmax", "each image read through 32 spatial-softmax keypoints (the expected (x, y) of 32 maps "
           "of the encoder's last feature map, robomimic's and Diffusion Policy's readout) instead of the flattened "
           "map: an object's place reaches the policy as coordinates that move smoothly with it, which a few "
           "demonstrations can interpolate between",
           model={"image_keypoints": 32}),
    Recipe("history-4", "four observation frames of context instead of the preset's history (two by default)",
           model={"n_obs": 4}),
    Recipe("colour-jitter", "colour-jitter augmentation in training: brightness, contrast and saturation x U(0.7, 1.3) "
           "per sample", model={"augment_colour": 0.3}),
    Recipe("random-shift", "random-shift augmentation in training (DrQ): the images padded by 4 px and cropped back "
           "at a random offset per sample", model={"augment_pad": 4}),
    Recipe("video-5x", "five action-free expert videos per demonstration of each task (50 at 10 demonstrations), "
           "recorded at seeds the demonstrations do not use, co-trained: every step adds half a batch of video windows "
           "that train the future streams alone. Whether seeing placements without their actions helps a policy that "
           "predicts the future; the preset's coupling must predict the future without reading the action",
           video_per_demo=5),
    Recipe("video-5x-latent", "the videos of video-5x through latent actions (LAPA): a latent action model fitted on "
           "them labels every frame, the first half of the steps trains the whole model to predict the latent actions, "
           "the second half the real actions from the demonstrations. Any preset, a VLA too",
           video_per_demo=5, video_curriculum="latent-actions"),
    Recipe("video-randomized", "as many action-free expert videos as demonstrations of each task, at seeds the "
           "demonstrations do not use, collected under every appearance factor drawn per episode up to its middle level "
           "(as randomized's demonstrations), co-trained: the future streams see cameras, lights, colours and "
           "distractors that the labelled demonstrations, left plain, do not show. Domain randomization without "
           "labelling a randomized episode; the preset's coupling must predict the future without reading the action",
           video_per_demo=1, video_shift=APPEARANCE_UP_TO_MEDIUM),
    Recipe("no-future-loss", "the future loss switched off (lambda_gen = 0): the same model, demonstrations and "
           "steps, but nothing learns to predict the future, so the entry is the preset without its world model. "
           "Whether predicting the future is what the preset gains over a policy; only a preset whose action does "
           "without its future at inference (a joint or post-head coupling that skips it)",
           model={"future_weight": 0.0}),
    Recipe("flow-matching", "the action (and any future) denoised by flow matching instead of the preset's DDIM "
           "noise prediction: straight paths from noise to data, learned as a velocity and sampled with Euler steps, "
           "as uva's and uwm's heads are. Whether their lead comes from the trunk that runs once or from the "
           "parameterization; only a preset whose backbone denoises (diffusion, hybrid) and that does not flow already",
           model={"parameterization": "flow"}),
    Recipe("double-steps", "twice the bench's training steps, the learning-rate schedule stretched to match: "
           "whether a lever's unshifted cost is one of fitting a wider spread of demonstrations in the same steps",
           steps_factor=2),
    Recipe("quadruple-steps", "four times the bench's training steps, the learning-rate schedule stretched to match: "
           "a multi-task model of a large group shares the protocol's steps among more tasks (10-demos easy: 28, "
           "hard: 6), so whether a group's low success is a matter of training budget per task",
           steps_factor=4),
    Recipe("replan-4", "chunked deployment replanning every 4 control steps instead of the preset's K (8 by default): "
           "each chunk's actions executed for half as long before the policy looks again",
           deploy={"deployment": "chunked", "n_action_steps": 4}),
    Recipe("sampler-50", "50 sampler steps per model call at evaluation instead of the model's 10 (DDIM steps for "
           "noise prediction, Euler steps for flow matching), the trained run shared: whether a denoising head's "
           "success is limited by how coarsely it samples the action; only a preset that samples in steps",
           inference_steps=50),
    Recipe("ensemble", "temporal ensembling (ACT), whatever the preset's own regime: chunked deployment with a new "
           "chunk every control step, each executed action the average of every live chunk's action for that step "
           "with weights exp(-0.01 i), oldest first: the policy sees a moved object at the next step instead of up "
           "to K steps later",
           deploy={"deployment": "chunked", "n_action_steps": 1, "ensemble": 0.01}),
    Recipe("prior-proposals", "a rollout coupling's planner draws its candidate chunks from the model's own action "
           "prior (samples of its policy stream) instead of the preset's proposal: the search refines what the policy "
           "would do instead of looking for it among uniform random chunks (world-model-mpc's proposal)",
           planner={"proposal": "prior"}),
    Recipe("test-time-future", "test-time adaptation: before every replan, one Adam step (lr 1e-4) of the model's "
           "own future loss p(s | c) on its observation encoder, over the 8 newest windows whose future the episode "
           "has shown; every episode starts from the trained weights",
           deploy={"adapt_steps": 1, "adapt_lr": 1e-4, "adapt_windows": 8}),
    Recipe("test-time-inverse", "test-time adaptation as test-time-future, with the inverse dynamics p(a | c, s) of "
           "the executed action chunks beside the futures they led to as the objective (Hansen et al. 2021's PAD)",
           deploy={"adapt_steps": 1, "adapt_lr": 1e-4, "adapt_windows": 8, "adapt_objective": "inverse"}),
)
RECIPES: dict[str, Recipe] = {r.name: r for r in _RECIPES}
"""Recipe name -> recipe; one entry per recipe."""
SEPARATOR = "+"


def parse_entry(entry: str) -> tuple[str, tuple[Recipe, ...]]:
    """A bench entry ``preset[+recipe...]`` as its preset and recipes, or ``ValueError`` naming what is unknown."""
    preset, *names = entry.split(SEPARATOR)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} in {entry!r}; choose from: {', '.join(PRESETS)}")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe(s) {', '.join(unknown)} in {entry!r}; choose from: {', '.join(RECIPES)}")
    if len(set(names)) < len(names):
        raise ValueError(f"{entry!r} names a recipe twice")
    return preset, tuple(RECIPES[n] for n in names)


def collect_shift(recipes: tuple[Recipe, ...]) -> str:
    """The shift the demonstrations of these recipes are collected under (their shifts joined; ``none`` if none)."""
    return ",".join(r.collect_shift for r in recipes if r.collect_shift != "none") or "none"


def collect_suite(recipes: tuple[Recipe, ...], suite: str) -> str:
    """The suite these recipes' demonstrations come from: ``suite``, or the one variant a recipe names."""
    variants = {r.collect_suite for r in recipes if r.collect_suite is not None}
    if len(variants) > 1:
        raise ValueError(f"recipes ask for demonstrations from several suites: {', '.join(sorted(variants))}")
    return variants.pop() if variants else suite


def collect_image_size(recipes: tuple[Recipe, ...]) -> int | None:
    """The image size these recipes' demonstrations are rendered at: the one a recipe names, or None (the suite's)."""
    sizes = {r.collect_image_size for r in recipes if r.collect_image_size is not None}
    if len(sizes) > 1:
        raise ValueError(f"recipes ask for images of several sizes: {', '.join(map(str, sorted(sizes)))}")
    return sizes.pop() if sizes else None


def changes_collection(recipe: Recipe) -> bool:
    """Whether the recipe's demonstrations differ from the bench's (another shift, suite or image size)."""
    return recipe.collect_shift != "none" or recipe.collect_suite is not None or recipe.collect_image_size is not None


def trained_entry(entry: str) -> str:
    """The entry whose trained run ``entry`` evaluates: ``entry`` without its deployment-only recipes."""
    preset, recipes = parse_entry(entry)
    return SEPARATOR.join([preset, *(r.name for r in recipes if not r.deployment_only)])


def training_steps(recipes: tuple[Recipe, ...], steps: int) -> int:
    """The training steps of an entry with these recipes in a bench that trains ``steps``."""
    return steps * math.prod(r.steps_factor for r in recipes)


def video_recipe(recipes: tuple[Recipe, ...]) -> Recipe | None:
    """The recipe that adds action-free video to training (None: none does; two video recipes are refused)."""
    adding = [r for r in recipes if r.video_per_demo]
    if len(adding) > 1:
        raise ValueError(f"recipes add video twice: {', '.join(r.name for r in adding)}")
    return adding[0] if adding else None


def video_curriculum(recipes: tuple[Recipe, ...]) -> str | None:
    """How these recipes' video enters training (``wam train --curriculum``); None: they add no video."""
    video = video_recipe(recipes)
    return video.video_curriculum if video else None


def video_options(recipes: tuple[Recipe, ...], steps: int) -> dict[str, Any]:
    """The ``TrainConfig`` fields saying how these recipes' video enters a training of ``steps`` steps (besides
    ``video``, the collection's path); empty without video."""
    curriculum = video_curriculum(recipes)
    if curriculum is None:
        return {}
    return {"curriculum": curriculum, **({"video_steps": steps // 2} if curriculum == "latent-actions" else {})}


def model_overrides(recipes: tuple[Recipe, ...]) -> dict[str, Any]:
    """The ``ModelConfig`` fields these recipes set (a field set by two recipes is refused)."""
    return _overrides(recipes, "model")


def deploy_overrides(recipes: tuple[Recipe, ...]) -> dict[str, Any]:
    """The ``DeploymentConfig`` fields these recipes set (a field set by two recipes is refused)."""
    return _overrides(recipes, "deploy")


def planner_overrides(recipes: tuple[Recipe, ...]) -> dict[str, Any]:
    """The ``PlannerOverrides`` fields these recipes set (a field set by two recipes is refused)."""
    return _overrides(recipes, "planner")


def recipe_inference_steps(recipes: tuple[Recipe, ...]) -> int | None:
    """The sampler steps these recipes evaluate with (None: the model's; two recipes that set them are refused)."""
    steps = [r.inference_steps for r in recipes if r.inference_steps is not None]
    if len(steps) > 1:
        raise ValueError("recipes set inference_steps twice")
    return steps[0] if steps else None


def _overrides(recipes: tuple[Recipe, ...], kind: str) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for recipe in recipes:
        fields = getattr(recipe, kind)
        clash = set(overrides) & set(fields)
        if clash:
            raise ValueError(f"recipes set {', '.join(sorted(clash))} twice")
        overrides.update(fields)
    return overrides
