import dataclasses
import json

import pytest

from wam.anatomy import SpecError, WAMSpec
from wam.presets.census import (
    AXES,
    CensusConfig,
    CensusRow,
    axis_counts,
    census_spec,
    filter_census,
    find_row,
    load_census,
    run_census,
    runnable,
)

FIELDS = (
    "method", "table_date", "arxiv", "philosophy", "substrate", "backbone",
    "coupling", "deployment", "backbone_detail", "efficiency_move",
)


def test_loads_all_rows_with_expected_fields():
    rows = load_census()
    assert len(rows) == 109
    assert tuple(f.name for f in dataclasses.fields(CensusRow)) == FIELDS
    assert rows[0].method == "UniPi"
    assert rows[0].to_dict()["arxiv"] == "2302.00111"
    assert len({r.method for r in rows}) == 109


def test_every_field_is_filled():
    for row in load_census():
        assert isinstance(row.efficiency_move, bool)
        assert all(isinstance(v, str) and v.strip() for k, v in row.to_dict().items() if k != "efficiency_move"), row


def test_load_returns_a_copy():
    load_census().clear()
    assert len(load_census()) == 109


@pytest.mark.parametrize("query", ["pixel-latent", "Pixel (latent)", "PIXEL_LATENT", "pixel latent"])
def test_substrate_spellings_are_equivalent(query):
    rows = filter_census(load_census(), substrate=query)
    assert rows and all("Pixel (latent)" in r.substrate for r in rows)
    assert len(rows) == len(filter_census(load_census(), substrate="Pixel (latent)"))


def test_filters_match_substrings():
    census = load_census()
    latent = filter_census(census, substrate="latent")
    assert {r.substrate for r in latent} >= {"Pixel (latent)", "Audio (latent)"}
    assert {r.coupling for r in filter_census(census, coupling="post-prediction")} == {"Post-prediction head"}
    assert {r.backbone for r in filter_census(census, backbone="llm")} == {"LLM/VLM"}


def test_no_filter_keeps_everything():
    assert filter_census(load_census()) == load_census()


def test_combined_filters_narrow_and_counts_add_up():
    census = load_census()
    one = filter_census(census, substrate="pixel-latent")
    both = filter_census(census, substrate="pixel-latent", coupling="post-prediction")
    assert 0 < len(both) < len(one) < len(census)
    assert set(both) <= set(one)
    assert filter_census(one, coupling="post-prediction") == both
    counts = axis_counts(both)
    assert tuple(counts) == AXES
    for axis, tally in counts.items():
        assert sum(tally.values()) == len(both), axis
        assert list(tally.values()) == sorted(tally.values(), reverse=True)


def test_valid_value_absent_from_subset_is_empty_not_an_error():
    audio = filter_census(load_census(), substrate="audio")
    assert filter_census(audio, substrate="geometric") == []


def test_unknown_value_names_axis_and_choices():
    with pytest.raises(ValueError) as err:
        filter_census(load_census(), substrate="audiox")
    message = str(err.value)
    assert "\n" not in message
    assert "substrate" in message and "'audiox'" in message
    assert "Affordance" in message and "Audio (latent)" in message and "Pixel (latent)" in message


def test_run_census_json(capsys):
    rows = run_census(CensusConfig(json=True, philosophy="latent-only", deployment="chunked"))
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, list) and len(data) == len(rows) > 0
    assert all(d["philosophy"] == "Latent-Only" and "Chunked" in d["deployment"] for d in data)
    assert set(data[0]) == {*FIELDS, "runnable", "why_not"}
    for d, row in zip(data, rows):
        assert (d["runnable"], d["why_not"]) == runnable(row)


def test_run_census_json_reports_why_not(capsys):
    run_census(CensusConfig(json=True, substrate="audio"))
    (audio,) = json.loads(capsys.readouterr().out)
    assert audio["runnable"] is False and "audio" in audio["why_not"]


def test_run_census_table(capsys):
    rows = run_census(CensusConfig())
    out = capsys.readouterr().out
    assert len(rows) == 109
    assert "UniPi" in out and "Render-and-Decode 58" in out
    assert "109 of 109 methods" in out
    assert f"{sum(runnable(r)[0] for r in rows)} of 109 methods runnable" in out
    assert "runnable" in out and "yes" in out and "MetaWorld/MuJoCo" in out


def test_run_census_table_filtered(capsys):
    rows = run_census(CensusConfig(backbone="llm"))
    out = capsys.readouterr().out
    assert "UniPi" not in out
    assert f"LLM/VLM {len(rows)}" in out and f"{len(rows)} of 109 methods" in out


def test_anatomy_names_match_census_wording():
    rows = load_census()
    assert {r.backbone for r in filter_census(rows, backbone="jepa")} == {"Joint-embedding"}
    assert {r.coupling for r in filter_census(rows, coupling="post-head")} == {"Post-prediction head"}
    assert {r.substrate for r in filter_census(rows, substrate="feature-token")} == {"Feature (VLM token)"}
    assert [r.method for r in filter_census(rows, substrate="feature-encoder-only")] == ["Fast-WAM"]


def test_most_rows_are_runnable_and_the_rest_say_why():
    rows = load_census()
    verdicts = {r.method: runnable(r) for r in rows}
    assert sum(ok for ok, _ in verdicts.values()) >= 100
    for row in rows:
        ok, why_not = verdicts[row.method]
        if ok:
            assert why_not is None
            assert isinstance(census_spec(row), WAMSpec)
        else:
            assert isinstance(why_not, str) and why_not.strip() and "\n" not in why_not, row.method
            with pytest.raises(SpecError) as err:
                census_spec(row)
            assert why_not in str(err.value) and row.method in str(err.value)


def test_audio_row_is_not_runnable():
    (row,) = filter_census(load_census(), substrate="audio")
    ok, why_not = runnable(row)
    assert not ok and "audio" in why_not.lower() and "MetaWorld/MuJoCo" in why_not
    with pytest.raises(SpecError, match="audio"):
        census_spec(row)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("JOPAT", dict(substrate="pixel-latent+geometric", coupling="joint", backbone="diffusion", deployment="chunked")),
        ("4DGen", dict(substrate="pixel-decoded+geometric", coupling="post-head", backbone="diffusion",
                       deployment="open-loop")),
        ("MV-VDP", dict(substrate="pixel-decoded+affordance", coupling="joint", backbone="diffusion",
                        deployment="chunked")),
        ("HarmoWAM", dict(substrate="pixel-latent", coupling="post-head", backbone="hybrid", deployment="chunked")),
        ("DreamZero", dict(substrate="pixel-latent", coupling="joint", backbone="autoregressive",
                           deployment="single-step")),
        ("PointWorld", dict(substrate="geometric", coupling="rollout", backbone="hybrid", deployment="chunked")),
        ("FLARE", dict(substrate="feature-teacher", coupling="post-head", backbone="jepa", deployment="chunked")),
        ("Fast-WAM", dict(substrate="feature-encoder-only", coupling="post-head", backbone="diffusion",
                          deployment="chunked")),
    ],
)
def test_census_spec_maps_survey_wording(method, expected):
    spec = census_spec(find_row(method))
    assert spec.to_dict() == expected
    assert spec == WAMSpec(**expected)


def test_conjunction_row_maps_to_a_conjunction_spec():
    row = find_row("JOPAT")
    assert "∧" in row.substrate
    assert [s.value for s in census_spec(row).substrates] == ["pixel-latent", "geometric"]


def _fabricated(**overrides):
    base = dict(method="Made-Up", table_date="2026.01", arxiv="0000.00000", philosophy="Latent-Only",
                substrate="Pixel (latent)", backbone="Diffusion", coupling="Joint generation", deployment="Chunked",
                backbone_detail="none", efficiency_move=False)
    return CensusRow(**{**base, **overrides})


@pytest.mark.parametrize(
    ("axis", "wording"),
    [("substrate", "Smell (latent)"), ("substrate", "Pixel (decoded) ∧ Hologram"), ("backbone", "Quantum"),
     ("coupling", "Telepathy"), ("deployment", "Sometimes")],
)
def test_unknown_wording_raises_spec_error_naming_it(axis, wording):
    row = _fabricated(**{axis: wording})
    with pytest.raises(SpecError) as err:
        census_spec(row)
    message = str(err.value)
    assert "\n" not in message and axis in message and "Made-Up" in message
    assert repr(wording.split(" ∧ ")[-1]) in message
    ok, why_not = runnable(row)
    assert not ok and why_not in message


def test_impossible_combination_raises_spec_error():
    row = _fabricated(substrate="Pixel (latent)", backbone="Joint-embedding")
    with pytest.raises(SpecError, match="jepa"):
        census_spec(row)


@pytest.mark.parametrize("name", ["GR-1", "gr-1", "gr_1", "GR 1", "gr1", " Gr-1 "])
def test_find_row_ignores_case_and_separators(name):
    assert find_row(name).method == "GR-1"


def test_find_row_unique_and_exact_for_every_method():
    for row in load_census():
        assert find_row(row.method) == row
        assert find_row(row.method.upper()) == row


def test_find_row_unknown_suggests_close_matches():
    with pytest.raises(ValueError) as err:
        find_row("dreamzro")
    message = str(err.value)
    assert "\n" not in message and "'dreamzro'" in message and "DreamZero" in message and "wam census" in message
    with pytest.raises(ValueError, match="wam census"):
        find_row("zzzzqqqq")
