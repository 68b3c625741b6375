"""Public preference layouts (rewardlab.package.public): each row becomes one item with a prior label."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest
from PIL import Image as PILImage

from rewardlab.data import Label
from rewardlab.package.layouts import ItemSpecParser
from rewardlab.package.lines import ItemSpec, LineError
from rewardlab.package.public import ID_HEX_DIGITS
from rewardlab.readers import load_dataset


def trl_row(**fields: object) -> dict:
    row = {"prompt": "How many red balls?", "chosen": "Two.", "rejected": "Three.", "images": ["images/red.png"]}
    return _with(row, fields)


def llava_row(**fields: object) -> dict:
    row = {
        "id": "22564",
        "image": "images/red.png",
        "conversations": [{"from": "human", "value": "<image>\nHow many red balls?"}, {"from": "gpt", "value": "Two."}],
        "output_1": {"from": "llava", "value": "Two."},
        "output_2": {"from": "llava", "value": "Three."},
        "preference": 1,
    }
    return _with(row, fields)


def vlrb_row(**fields: object) -> dict:
    row = {
        "id": "RLAIF-V-1",
        "query": "How many red balls?",
        "response": ["Three.", "Two."],
        "human_ranking": [1, 0],
        "image": "images/red.png",
        "models": ["model-x", "model-y"],
        "judge": "human",
        "rationale": "There are two.",
        "query_source": "RLAIF-V",
        "ground_truth": "",
    }
    return _with(row, fields)


def _with(row: dict, fields: dict) -> dict:
    """Return the row with `fields` set; a field set to None is left out."""
    return {key: value for key, value in {**row, **fields}.items() if value is not None}


def parse(*rows: dict) -> list[ItemSpec]:
    """Parse rows as the lines of one file."""
    parser = ItemSpecParser(strength_scale=4)
    return [parser(json.dumps(row).encode()) for row in rows]


def side_texts(spec: ItemSpec) -> dict[str, str]:
    """Return the text of canonical a and b."""
    texts = {response.id: response.text for response in spec.responses}
    a, b = spec.pairs[0]
    return {"a": texts[a], "b": texts[b]}


def worse_text(spec: ItemSpec) -> str:
    """Return the text of the response the prior names more hallucinated."""
    (prior,) = spec.priors
    return side_texts(spec)[prior.more_hallucinated]


def test_trl_row_becomes_an_item_whose_prior_names_the_rejected_response():
    (spec,) = parse(trl_row(prompt="<image>\nHow many red balls?", origin="rlaif-v"))

    assert (spec.image, spec.prompt) == ("images/red.png", "How many red balls?")
    assert worse_text(spec) == "Three." and sorted(side_texts(spec).values()) == ["Three.", "Two."]
    (prior,) = spec.priors
    assert (prior.pair, prior.strength, prior.source) == (0, None, "trl")
    # Named by canonical position, so an id never tells which response was chosen.
    assert [response.id for response in spec.responses] == ["r0", "r1"] and spec.pairs == (("r0", "r1"),)
    assert spec.external_id.startswith("trl-") and len(spec.external_id) == len("trl-") + ID_HEX_DIGITS
    assert (spec.facts, spec.meta, spec.gold) == ({}, {"origin": "rlaif-v"}, ())


def test_conversational_trl_row_takes_the_last_user_message_and_keeps_the_turns_before_it():
    prompt = [
        {"role": "system", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": "How many"},
                {"type": "text", "text": "red balls?"},
            ],
        },
    ]
    chosen = [{"role": "assistant", "content": [{"type": "text", "text": "Two."}]}]
    (spec,) = parse(trl_row(prompt=prompt, chosen=chosen, rejected=[{"role": "assistant", "content": "Three."}], id=7))

    assert spec.prompt == "How many\nred balls?" and spec.external_id == "7"
    assert spec.meta == {"context": [{"role": "system", "text": "Answer briefly."}]}
    assert worse_text(spec) == "Three."


@pytest.mark.parametrize("preference, worse", [(1, "Three."), (2, "Two.")])
def test_llava_rlhf_row_names_the_output_not_preferred(preference, worse):
    conversations = [
        {"from": "human", "value": "<image>\nWhat is in the image?"},
        {"from": "gpt", "value": "Red balls."},
        {"from": "human", "value": "How many red balls?"},
        {"from": "gpt", "value": "There are two."},
    ]
    (spec,) = parse(llava_row(conversations=conversations, preference=preference, hallucination=True))

    assert (spec.external_id, spec.prompt, spec.image) == ("22564", "How many red balls?", "images/red.png")
    assert worse_text(spec) == worse and spec.priors[0].source == "llava-rlhf"
    assert {(r.id, r.text, r.model) for r in spec.responses} == {
        ("output_1", "Two.", "llava"),
        ("output_2", "Three.", "llava"),
    }
    assert spec.meta == {
        "hallucination": True,
        "context": [{"role": "user", "text": "What is in the image?"}, {"role": "assistant", "text": "Red balls."}],
        "reference_answer": "There are two.",
    }


@pytest.mark.parametrize("ranking, worse", [([1, 0], "Three."), ([0, 1], "Two.")])
def test_vl_rewardbench_rank_zero_is_the_preferred_response(ranking, worse):
    (spec,) = parse(vlrb_row(human_ranking=ranking, ground_truth="two"))

    assert (spec.external_id, spec.prompt) == ("RLAIF-V-1", "How many red balls?")
    assert worse_text(spec) == worse and spec.priors[0].source == "vl-rewardbench"
    models = {r.id: (r.text, r.model) for r in spec.responses}
    assert models == {"response_0": ("Three.", "model-x"), "response_1": ("Two.", "model-y")}
    assert spec.facts == {"answer": "two"}
    assert spec.meta == {"judge": "human", "rationale": "There are two.", "query_source": "RLAIF-V"}


def test_canonical_order_is_drawn_from_the_row_not_from_the_source_position():
    rows = [trl_row(prompt=f"Question {n}?") for n in range(200)]
    specs = parse(*rows)

    chosen_is_a = sum(side_texts(spec)["a"] == "Two." for spec in specs)
    assert 70 < chosen_is_a < 130
    assert all(worse_text(spec) == "Three." for spec in specs)
    # The same row converts the same way every time, whatever the order of its keys.
    reordered = dict(reversed(list(rows[0].items())))
    assert parse(reordered) == parse(rows[0]) == [specs[0]]


def test_a_later_row_without_markers_is_read_in_the_files_layout():
    parser = ItemSpecParser(strength_scale=4)
    parser(json.dumps(vlrb_row()).encode())

    with pytest.raises(LineError, match="missing required field 'query'; a VL-RewardBench row has the fields"):
        parser(json.dumps({"id": "x", "image": "images/red.png"}).encode())


def test_a_row_of_another_layout_is_refused_in_a_file():
    parser = ItemSpecParser(strength_scale=4)
    parser(json.dumps(trl_row()).encode())

    with pytest.raises(LineError, match="a VL-RewardBench row in a file of TRL preference rows"):
        parser(json.dumps(vlrb_row()).encode())


def test_an_unknown_row_lists_every_layout_with_its_fields():
    with pytest.raises(LineError) as caught:
        parse({"instruction": "Q?", "answer": "A."})

    message = str(caught.value)
    assert message.startswith('unknown layout: the row has the fields ["answer", "instruction"]')
    for expected in (
        "import package (external_id, image, prompt, responses)",
        "TRL preference (prompt, chosen, rejected, images)",
        "RLAIF-V (question, chosen, rejected, image)",
        "LLaVA-RLHF human preference (image, conversations, output_1, output_2, preference)",
        "VL-RewardBench (query, response, human_ranking, image)",
    ):
        assert expected in message


BAD_ROWS = {
    "row mixing layouts": (trl_row(output_1="x"), "mixes layouts: it has TRL preference fields (chosen, rejected)"),
    "trl missing rejected": (trl_row(rejected=None), "missing required field 'rejected'"),
    "trl two images": (trl_row(images=["a.png", "b.png"]), "images: expected one image, as an item shows one, got 2"),
    "trl image not a string": (trl_row(images=[{"path": "a.png"}]), "images[0]: expected a non-empty string"),
    "trl prompt ends with the assistant": (
        trl_row(prompt=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]),
        "prompt: expected a string or messages that end with a user message",
    ),
    "trl two chosen messages": (
        trl_row(chosen=[{"role": "assistant", "content": "A."}] * 2),
        "chosen: expected a string or one assistant message",
    ),
    "trl unknown part": (
        trl_row(prompt=[{"role": "user", "content": [{"type": "video"}]}]),
        'prompt[0].content[0].type: expected "text" or "image", got "video"',
    ),
    "trl prompt only an image token": (trl_row(prompt="<image>"), "prompt: expected the question as text"),
    "trl field named like a derived one": (
        trl_row(prompt=[{"role": "system", "content": "S."}, {"role": "user", "content": "Q?"}], context="x"),
        "context: RewardLab keeps its own 'context' in meta",
    ),
    "id too long": (trl_row(id="x" * 201), "id: expected at most 200 characters"),
    "id a boolean": (llava_row(id=True), "id: expected a non-empty string, got true"),
    "llava output not an object": (llava_row(output_1="Two."), 'output_1: expected an object, got "Two."'),
    "llava preference 3": (llava_row(preference=3), "preference: expected 1 (output_1 is better) or 2"),
    "llava preference true": (llava_row(preference=True), "preference: expected 1 (output_1 is better) or 2"),
    "llava preference a string": (llava_row(preference="1"), "preference: expected 1"),
    "llava no human turn": (llava_row(conversations=[{"from": "gpt", "value": "Hi."}]), "expected a human turn"),
    "llava unknown speaker": (
        llava_row(conversations=[{"from": "user", "value": "Q?"}]),
        'conversations[0].from: expected "human" or "gpt", got "user"',
    ),
    "llava speaker a list": (
        llava_row(conversations=[{"from": ["human"], "value": "Q?"}]),
        'conversations[0].from: expected "human" or "gpt", got ["human"]',
    ),
    "vlrb tie": (vlrb_row(human_ranking=[0, 0]), "human_ranking: expected [0, 1] or [1, 0]"),
    "vlrb ranking of three": (vlrb_row(human_ranking=[0, 1, 2]), "human_ranking: expected [0, 1] or [1, 0]"),
    "vlrb ranking of booleans": (vlrb_row(human_ranking=[True, False]), "human_ranking: expected [0, 1] or [1, 0]"),
    "vlrb three responses": (
        vlrb_row(response=["a", "b", "c"]),
        "response: expected the 2 responses that were ranked, got 3",
    ),
    "vlrb one model": (vlrb_row(models=["m"]), "models: expected one model per response, 2, got 1"),
    "vlrb image missing": (vlrb_row(image=None), "missing required field 'image'"),
}


@pytest.mark.parametrize("row, message", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_bad_row_is_refused_with_the_reason(row, message):
    with pytest.raises(LineError) as caught:
        parse(row)

    assert message in str(caught.value)


def png() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4), (255, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def test_loader_reads_public_rows_of_a_bare_jsonl_as_a_package_with_data_uris(tmp_path):
    uri = "data:image/png;base64," + base64.b64encode(png()).decode()
    path = tmp_path / "vlrb.jsonl"
    rows = [vlrb_row(image=uri), vlrb_row(id="RLAIF-V-2", image=uri, human_ranking=[0, 1])]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    specs = parse(*rows)

    with load_dataset(path) as data:
        assert [item.external_id for item in data.items] == ["RLAIF-V-1", "RLAIF-V-2"]
        assert data.labels == [
            Label(i, spec.priors[0].more_hallucinated, None, "prior") for i, spec in enumerate(specs)
        ]
        assert data.read_image(data.items[1].image) == png()


def test_loader_reads_trl_rows_in_a_package_as_prior_labels(tmp_path):
    path = tmp_path / "trl.zip"
    uri = "data:image/png;base64," + base64.b64encode(png()).decode()
    rows = [trl_row(), trl_row(prompt="Q2?", images=[uri])]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("items.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
        archive.writestr("images/red.png", png())

    with load_dataset(path) as data:
        assert [label.source for label in data.labels] == ["prior", "prior"]
        sides = [(data.pairs[label.pair], label.more_hallucinated) for label in data.labels]
        assert [pair.a_text if side == "a" else pair.b_text for pair, side in sides] == ["Three.", "Three."]
        assert [data.read_image(item.image) for item in data.items] == [png(), png()]
