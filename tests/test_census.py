import dataclasses
import json

import pytest

from wam.presets.census import (
    AXES,
    CensusConfig,
    CensusRow,
    axis_counts,
    filter_census,
    load_census,
    run_census,
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
    assert set(data[0]) == set(FIELDS)


def test_run_census_table(capsys):
    rows = run_census(CensusConfig())
    out = capsys.readouterr().out
    assert len(rows) == 109
    assert "UniPi" in out and "Render-and-Decode 58" in out
    assert "109 of 109 methods" in out


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
