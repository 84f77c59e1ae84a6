"""Parsing the judge's reply into an Analysis, and the structured-output schema asked of it."""

from __future__ import annotations

import json

import pytest

from apps.fusion.analysis import AnalysisError, analysis_parse, analysis_response_format
from tests.fusion.conftest import VALID_ANALYSIS


def test_it_parses_bare_json() -> None:
    analysis = analysis_parse(VALID_ANALYSIS)

    assert analysis.consensus == ["Both work"]
    assert analysis.unique_insights[0].model == "fake/a"


def test_nul_escapes_in_the_judges_strings_are_replaced_so_the_analysis_can_be_stored() -> None:
    data = json.loads(VALID_ANALYSIS)
    data["consensus"] = ["Both\u0000work"]
    data["unique_insights"][0]["insight"] = "a\u0000b"

    analysis = analysis_parse(json.dumps(data))

    assert analysis.consensus == ["Both\ufffdwork"]
    assert analysis.unique_insights[0].insight == "a\ufffdb"


def test_it_strips_a_code_fence_and_surrounding_chatter() -> None:
    text = f"Here is my analysis:\n\n```json\n{VALID_ANALYSIS}\n```\nHope this helps."

    assert analysis_parse(text).blind_spots == ["Cost"]


def test_it_finds_the_object_in_prose_without_a_fence() -> None:
    assert analysis_parse(f"Sure. {VALID_ANALYSIS} Done.").consensus == ["Both work"]


def test_it_ignores_extra_keys() -> None:
    data = json.loads(VALID_ANALYSIS) | {"confidence": "high"}

    assert analysis_parse(json.dumps(data)).consensus == ["Both work"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "judge_empty_completion"),
        ("  \n ", "judge_empty_completion"),
        ("I could not compare these answers.", "judge_not_valid_json"),
        ('{"consensus": ["a",], }', "judge_not_valid_json"),
        ('{"consensus": ["a"]', "judge_not_valid_json"),
        ('{"consensus": ["a"]}', "judge_schema_mismatch"),
        (
            '{"consensus": "a", "contradictions": [], "partial_coverage": [], "unique_insights": [], '
            '"blind_spots": []}',
            "judge_schema_mismatch",
        ),
        ("[1, 2, 3]", "judge_not_valid_json"),
    ],
)
def test_it_rejects_unusable_replies_with_the_brief_reason(text: str, reason: str) -> None:
    with pytest.raises(AnalysisError) as caught:
        analysis_parse(text)

    assert caught.value.reason == reason
    assert caught.value.detail


def test_a_schema_mismatch_names_the_missing_fields() -> None:
    with pytest.raises(AnalysisError) as caught:
        analysis_parse('{"consensus": ["a"]}')

    for field in ("contradictions", "partial_coverage", "unique_insights", "blind_spots"):
        assert field in caught.value.detail


def test_the_response_format_is_a_strict_json_schema_of_the_analysis() -> None:
    response_format = analysis_response_format()

    assert response_format["type"] == "json_schema"
    spec = response_format["json_schema"]
    assert spec["strict"] is True
    schema = spec["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    for definition in schema["$defs"].values():
        assert definition["additionalProperties"] is False
        assert set(definition["required"]) == set(definition["properties"])


def test_the_schema_is_built_once_not_for_every_judge_request() -> None:
    first, second = analysis_response_format(), analysis_response_format()

    # The same schema each time (pydantic builds it anew on every call: 0.65 ms per judge request).
    assert first["json_schema"]["schema"] is second["json_schema"]["schema"]
    # Each request gets its own outer dict, so one caller's changes never reach the next.
    assert first is not second and first["json_schema"] is not second["json_schema"]
