import pytest

from wam.anatomy import Backbone, Coupling, Deployment, SpecError, Substrate, WAMSpec


def test_strings_become_enums_and_round_trip():
    spec = WAMSpec(substrate="feature-encoder-only", coupling="post-head", backbone="diffusion", deployment="chunked")
    assert spec.substrates == (Substrate.FEATURE_ENCODER_ONLY,) and spec.backbone is Backbone.DIFFUSION
    assert WAMSpec(**spec.to_dict()) == spec
    assert spec.is_wam


def test_vla_is_not_a_wam():
    spec = WAMSpec(substrate="none", coupling="none")
    assert not spec.is_wam


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(substrate="pixel-decoded", backbone="jepa"), ["jepa", "pixel-decoded", "feature-teacher"]),
    (dict(substrate="none", coupling="post-head"), ["needs a predicted future", "coupling 'none'"]),
    (dict(substrate="feature-teacher", coupling="none"), ["never uses", "post-head"]),
    (dict(substrate="feature-encoder-only", coupling="rollout"), ["training-time target", "feature-teacher"]),
    (dict(substrate="audio"), ["unknown substrate 'audio'", "pixel-decoded"]),
    (dict(deployment="sometimes"), ["unknown deployment", "chunked"]),
])
def test_impossible_tuples_name_the_conflict_and_an_alternative(kwargs, fragments):
    with pytest.raises(SpecError) as err:
        WAMSpec(**kwargs)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_conjunctions_are_canonical_and_checked_per_component():
    spec = WAMSpec(substrate="geometric+pixel-decoded", coupling="joint")
    assert spec.substrate == "pixel-decoded+geometric"
    assert spec.substrates == (Substrate.PIXEL_DECODED, Substrate.GEOMETRIC)
    with pytest.raises(SpecError, match="repeats"):
        WAMSpec(substrate="geometric+geometric", coupling="joint")
    with pytest.raises(SpecError, match="conjunction"):
        WAMSpec(substrate="none+geometric", coupling="joint")
    with pytest.raises(SpecError, match="cannot generate substrate 'geometric'"):
        WAMSpec(substrate="feature-teacher+geometric", coupling="joint", backbone="jepa")


def test_every_axis_value_is_reachable():
    # Every enum value can appear in some valid spec: the rules never forbid a whole axis value.
    for substrate in Substrate:
        coupling = Coupling.NONE if substrate is Substrate.NONE else Coupling.POST_HEAD
        WAMSpec(substrate=substrate, coupling=coupling, backbone="diffusion")
    for deployment in Deployment:
        WAMSpec(deployment=deployment)


def test_public_api_is_importable():
    import wam

    for name in wam.__all__:
        assert getattr(wam, name) is not None
    with pytest.raises(AttributeError):
        wam.nothing_here


def test_docs_hold_the_current_support_table():
    from pathlib import Path

    from wam.anatomy import support_table

    docs = (Path(__file__).parents[1] / "docs/anatomy.md").read_text()
    assert support_table() in docs, "docs/anatomy.md is stale: paste wam.anatomy.support_table() into it"
