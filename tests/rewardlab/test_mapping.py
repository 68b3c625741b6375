"""Column mappings (rewardlab.package.mapping): a mapping checks itself, then reads any row into a RewardLab line."""

from __future__ import annotations

import json

import pytest

from rewardlab.package.layouts import ItemSpecParser
from rewardlab.package.lines import ItemSpec, LineError
from rewardlab.package.mapping import ColumnMapping, MappingError, preview
from rewardlab.package.package import Line

MAPPING = {
    "id": "qid",
    "prompt": "question",
    "image": "img",
    "answers": ["answer_a", "answer_b"],
    "preference": {"column": "winner", "values": {"A": 1, "B": 2}},
    "facts": {"caption": "caption"},
}


def row(**fields: object) -> dict:
    base = {
        "qid": "q-1",
        "question": "How many red balls?",
        "img": "images/red.png",
        "answer_a": "Two.",
        "answer_b": "Three.",
        "winner": "A",
        "caption": "Two red balls.",
        "split": "train",
    }
    return {key: value for key, value in {**base, **fields}.items() if value is not None}


def parse(mapping: dict, *rows: dict) -> list[ItemSpec]:
    mapping = {key: value for key, value in mapping.items() if value is not None}
    parser = ItemSpecParser(strength_scale=4, mapping=ColumnMapping.from_json(mapping))
    return [parser(json.dumps(r).encode()) for r in rows]


def worse_text(spec: ItemSpec) -> str | None:
    """The text of the answer the prior names as more hallucinated (None: no prior)."""
    if not spec.priors:
        return None
    texts = dict(zip(("a", "b"), (r.text for r in spec.responses), strict=True))
    return texts.get(spec.priors[0].more_hallucinated, spec.priors[0].more_hallucinated)


def test_a_mapped_row_becomes_an_item_with_its_facts_meta_and_prior():
    (spec,) = parse(MAPPING, row())
    assert (spec.external_id, spec.image, spec.prompt) == ("q-1", "images/red.png", "How many red balls?")
    assert {r.text for r in spec.responses} == {"Two.", "Three."}
    assert [r.id for r in spec.responses] == ["r0", "r1"] and spec.pairs == (("r0", "r1"),)
    assert spec.facts == {"caption": "Two red balls."}
    assert spec.meta == {"split": "train"}, "every column the mapping does not read is kept"
    assert worse_text(spec) == "Three.", "A is better, so answer B is the more hallucinated"
    assert spec.priors[0].source == "mapping"


@pytest.mark.parametrize(
    "preference, winner, worse",
    [
        ({"column": "winner", "values": {"A": 1, "B": 2}}, "B", "Two."),
        ({"column": "winner", "values": {"1": 1, "2": 2}}, 2, "Two."),  # 2 in the row is the key "2"
        ({"column": "winner", "values": {"0": 1, "1": 2}}, 0, "Three."),
        ({"column": "winner", "means": "more_hallucinated", "values": {"A": 1, "B": 2}}, "B", "Three."),
        ({"column": "winner", "values": {"A": 1, "B": 2, "tie": "both"}}, "tie", "both"),
        (None, "A", None),
    ],
)
def test_the_preference_values_say_which_answer_is_more_hallucinated(preference, winner, worse):
    mapping = {**MAPPING, "preference": preference}
    (spec,) = parse(mapping, row(winner=winner))
    assert worse_text(spec) == worse
    if preference is None:
        assert spec.meta["winner"] == "A", "an unmapped preference column is kept in meta"


def test_chosen_and_rejected_columns_name_the_rejected_answer():
    mapping = {"prompt": "question", "image": "img", "chosen": "answer_a", "rejected": "answer_b", "source": "mine"}
    (spec,) = parse(mapping, row())
    assert worse_text(spec) == "Three." and spec.priors[0].source == "mine"
    assert spec.external_id.startswith("mine-"), "no id column: a hash of the row"


def test_position_says_nothing_canonical_a_is_drawn_per_row():
    specs = parse(MAPPING, *(row(qid=f"q-{i}") for i in range(40)))
    firsts = {spec.responses[0].text for spec in specs}
    assert firsts == {"Two.", "Three."}
    assert all(worse_text(spec) == "Three." for spec in specs)
    assert parse(MAPPING, row())[0] == parse(MAPPING, row())[0], "the same row imports the same way every time"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (row(qid=None), "missing column 'qid' (the id in the mapping)"),
        (row(winner="C"), 'column \'winner\' (preference): "C" is not one of "A", "B"'),
        (row(question=""), "column 'question' (prompt): expected a non-empty string"),
        (row(answer_b=3), "column 'answer_b' (answer 2): expected a string, got 3"),
        (row(img=["a.png", "b.png"]), "column 'img' (image): expected one image"),
        (row(qid="x" * 201), "column 'qid' (id): expected at most 200 characters"),
    ],
)
def test_a_row_that_does_not_fit_is_refused_naming_the_column(bad, reason):
    with pytest.raises(LineError) as caught:
        parse(MAPPING, bad)
    assert reason in str(caught.value)


def test_a_mapped_line_is_validated_by_the_package_rules():
    """The mapping builds a RewardLab line; package_item_spec's own checks still apply (one rule, one place)."""
    # Built directly: from_json refuses such a source itself.
    too_long = ColumnMapping(
        prompt="question", image="img", answers=("answer_a", "answer_b"), chosen_first=True, source="s" * 101
    )
    with pytest.raises(LineError, match=r"prior\[0\]\.source: expected at most 100 characters"):
        ItemSpecParser(strength_scale=4, mapping=too_long)(json.dumps(row()).encode())


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"prompt": None}, "prompt", "expected a column name"),
        ({"answers": ["answer_a"]}, "answers", "expected two column names"),
        ({"answers": None}, "answers", "expected the two answer columns"),
        ({"chosen": "answer_a"}, "chosen", "either answers or chosen and rejected"),
        ({"image": "question"}, "image", "column 'question' is already mapped as prompt"),
        ({"preference": {"column": "winner", "values": {"A": 1}}}, "preference.values", "no value names answer 2"),
        ({"preference": {"column": "winner", "values": {"A": 1, "B": 3}}}, "preference.values.B", "expected one of"),
        ({"preference": {"column": "winner", "means": "worse", "values": {"A": 1, "B": 2}}}, "preference.means", ""),
        ({"preference": {"values": {"A": 1, "B": 2}}}, "preference.column", "expected a column name"),
        ({"facts": ["caption"]}, "facts", "expected an object"),
        ({"source": ""}, "source", "expected a name"),
        ({"colour": "x"}, "colour", "unknown field"),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_field(change, field, message):
    mapping = {key: value for key, value in {**MAPPING, **change}.items() if value is not None}
    with pytest.raises(MappingError) as caught:
        ColumnMapping.from_json(mapping)
    assert caught.value.field == field and message in caught.value.message


def test_a_mapping_round_trips_through_its_json():
    for mapping in (MAPPING, {"prompt": "q", "image": "i", "chosen": "c", "rejected": "r", "models": ["m1", "m2"]}):
        parsed = ColumnMapping.from_json(mapping)
        assert ColumnMapping.from_json(parsed.as_json()) == parsed


def test_models_columns_name_who_wrote_each_answer():
    mapping = {**MAPPING, "models": ["model_a", "model_b"]}
    (spec,) = parse(mapping, {**row(), "model_a": "llava-7b", "model_b": None})
    assert {(r.text, r.model) for r in spec.responses} == {("Two.", "llava-7b"), ("Three.", "")}


def test_the_unknown_layout_error_points_at_the_mapping_step():
    with pytest.raises(LineError, match="map its columns on the import page, or send `mapping`"):
        ItemSpecParser(strength_scale=4)(json.dumps(row()).encode())


def test_preview_shows_every_column_of_the_first_rows_and_says_which_lines_are_bad():
    rows = [row(), {"question": "Q?", "extra": {"k": [1, 2]}, "img": "data:image/png;base64," + "A" * 500}]
    data = [json.dumps(r).encode() for r in rows] + [b"not json", b"{}", b"{}", b"{}"]
    lines = [Line(number, item, start=0, end=0) for number, item in enumerate(data, start=1)]

    shown = preview(lines)

    assert shown.columns == (*row(), "extra")
    assert len(shown.rows) == 5, "five rows"
    first, second, bad = shown.rows[:3]
    assert first.cells[shown.columns.index("winner")] == "A"
    assert second.cells[shown.columns.index("extra")] == '{"k": [1, 2]}'
    assert second.cells[shown.columns.index("answer_a")] == "", "a column the row lacks is empty"
    assert second.cells[shown.columns.index("img")].endswith("(522 characters)")
    assert (bad.where, bad.cells) == ("line 3", ()) and bad.error.startswith("not valid JSON")
