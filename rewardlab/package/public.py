"""Public preference layouts read as lines of items.jsonl (API.md, "Import package"): one row, one item.

Besides RewardLab's own lines, an import reads four layouts that multimodal preference data is published
in. Each row becomes the `ItemSpec` a RewardLab line would give: one item, its two responses, one pair and
one `prior` label that names the worse response as the more hallucinated, with strength null (no layout
grades how much worse). Prior labels train the reward model and are what curation checks; they never count
as human labels. The preference of LLaVA-RLHF and VL-RewardBench is an overall one, of which hallucination
is the main part; it is taken as the hallucination label.

TRL preference (prior source "trl"), TRL's preference dataset format, standard or conversational:

    {"prompt": "What is on the table?", "chosen": "A cup.", "rejected": "A cat.", "images": ["images/1.png"]}
    {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is on the table?"}]}],
     "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "A cup."}]}],
     "rejected": [{"role": "assistant", "content": "A cat."}], "images": ["images/1.png"]}

  The prompt is the last user message (a conversational prompt must end with one); the messages before it
  go to meta["context"]. `chosen` and `rejected` are a string or one assistant message; text parts are
  joined with newlines, image parts stand for the image. `images` holds exactly one image: an item shows
  one, and a question about several cannot be judged from the first alone. TRL names the two answers only
  by the label, so the responses are named by canonical position instead: "r0" is a, "r1" is b.
  TRL's `trl-lib/rlaif-v_formatted` is this layout in Parquet: a conversational prompt, and `images` a list
  of one embedded image.

RLAIF-V (prior source "rlaif-v"), the rows of RLAIF-V's pipeline output and of openbmb/RLAIF-V-Dataset:

    {"image_id": "...", "image_path": "images/1.png", "question": "What is on the table?",
     "chosen": "A cup.", "rejected": "A cat."}

  On the Hub the rows are Parquet with the image embedded (`image`, {bytes, path}) beside `image_path`,
  `ds_name`, `origin_dataset`, `origin_split` and `idx`, all kept in meta. `question` is the prompt; the
  rejected answer is the more hallucinated one. `chosen` and `rejected` are TRL's fields too: a row is
  RLAIF-V by its `question`, and one that also has TRL's `prompt` is refused as mixing the two. The
  responses are named by canonical position, "r0" and "r1", as in TRL.

LLaVA-RLHF human preference (prior source "llava-rlhf"), the rows of LLaVA-Human-Preference-10K
(`llava_7b_v1_preference.json`, read as it is published: one JSON array):

    {"id": "22564", "image": "COCO_train2014_000000123456.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is on the table?"}, {"from": "gpt", "value": "..."}],
     "output_1": {"from": "llava", "value": "A cup."}, "output_2": {"from": "llava", "value": "A cat."},
     "preference": 1}

  `preference` names the better output, 1 or 2 (LLaVA-RLHF's reward-model code maps it to choice 0 or 1).
  The prompt is the last human turn without its "<image>" token; the turns before it go to meta["context"]
  (roles "human" and "gpt" become "user" and "assistant", as in TRL). A gpt turn after it is the answer
  that LLaVA-RLHF replaces by each output; it is kept as meta["reference_answer"]. An output's `from`
  becomes the response's model. The responses are named "output_1" and "output_2".

VL-RewardBench (prior source "vl-rewardbench"), the rows of the benchmark with the image given as a path
(`image_path` on GitHub, `image` here):

    {"id": "RLAIF-V-1", "query": "What is on the table?", "response": ["A cup.", "A cat."],
     "human_ranking": [0, 1], "image_path": "images/1.png", "models": ["m1", "m2"], "judge": "human",
     "rationale": "...", "query_source": "RLAIF-V", "ground_truth": ""}

  `human_ranking[i]` is the rank of `response[i]`, 0 for the preferred one: the dataset card reads "[0, 1]
  denotes the first one is preferred; [1, 0] denotes the second one is better", so it must be one of those
  two. `models[i]` becomes the response's model and a non-empty `ground_truth` becomes facts["answer"].
  The responses are named "response_0" and "response_1".

In every layout:

- `image` or `image_path` (`images[0]` in TRL) is a relative path inside the zip or folder, a data: URI, or
  an image embedded in a Parquet cell, and is read exactly as a RewardLab line's image is
  (`lines.row_image`: both given and different is an error, unless the image is embedded).
- The external_id is the row's `id` (a string or an integer) when it has one, else "<source>-" and 16 hex
  digits of the row's SHA-256 (an embedded image counted by its cell, not its bytes): re-importing a file is
  refused. Rows that repeat an id with the same image and prompt are one item (`merge`).
- Canonical a/b comes from one bit of the row's SHA-256, not from the position in the source, which often
  says which answer won (always, in TRL): a model must not learn the position (DT2IT: shuffle the order
  when constructing pairs). The same file imports the same way every time.
- Every other field of the row is kept in meta under its own name (VL-RewardBench's query_source, judge and
  rationale, for example), so nothing in the row is silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rewardlab.package.lines import (
    IMAGE_PATH,
    MAX_ID_LENGTH,
    MAX_MODEL_LENGTH,
    Answer,
    ItemSpec,
    LabelSpec,
    Layout,
    LineError,
    MissingFieldError,
    ResponseSpec,
    expect_list,
    expect_object,
    expect_string,
    given,
    row_image,
    show_value,
)

TRL = Layout("TRL preference", markers=("chosen", "rejected"), fields=("prompt", "chosen", "rejected", "images"))
LLAVA_RLHF = Layout(
    "LLaVA-RLHF human preference",
    markers=("conversations", "output_1", "output_2", "preference"),
    fields=("image", "conversations", "output_1", "output_2", "preference"),
)
RLAIF_V = Layout("RLAIF-V", markers=("question",), fields=("question", "chosen", "rejected", "image"))
VL_REWARDBENCH = Layout(
    "VL-RewardBench",
    markers=("query", "response", "human_ranking"),
    fields=("query", "response", "human_ranking", "image"),
)
# The placeholder LLaVA-style text puts where the image goes; the annotator sees the image itself.
IMAGE_TOKEN = "<image>"
LLAVA_ROLES = {"human": "user", "gpt": "assistant"}
# Hex digits of the row's SHA-256 in the external_id of a row without an id: 64 bits, no collision in practice.
ID_HEX_DIGITS = 16


def trl_item_spec(record: dict[str, Any]) -> ItemSpec:
    """Convert a TRL preference row; the rejected response is the more hallucinated one."""
    _require(record, TRL)
    context, prompt = _trl_prompt(record["prompt"])
    chosen, rejected = (_trl_answer(record[key], key) for key in ("chosen", "rejected"))
    digest = row_digest(record)
    # Named by canonical position: the ids must not say which one was chosen, as "chosen" would.
    ids = ("r1", "r0") if row_flipped(digest) else ("r0", "r1")
    return _item(
        record,
        layout=TRL,
        source="trl",
        digest=digest,
        image=_one_image(record["images"]),
        prompt=prompt,
        options=(ResponseSpec(ids[0], chosen), ResponseSpec(ids[1], rejected)),
        worse=1,
        derived={"context": context},
    )


def rlaif_v_item_spec(record: dict[str, Any]) -> ItemSpec:
    """Convert an RLAIF-V row; the rejected response is the more hallucinated one."""
    _require(record, RLAIF_V)
    chosen, rejected = (expect_string(record[key], key, empty=True) for key in ("chosen", "rejected"))
    digest = row_digest(record)
    ids = ("r1", "r0") if row_flipped(digest) else ("r0", "r1")
    image, kept = row_image(record)
    return _item(
        record,
        layout=RLAIF_V,
        source="rlaif-v",
        digest=digest,
        image=image,
        prompt=_prompt_text(expect_string(record["question"], "question"), "question"),
        options=(ResponseSpec(ids[0], chosen), ResponseSpec(ids[1], rejected)),
        worse=1,
        derived=kept,
    )


def llava_rlhf_item_spec(record: dict[str, Any]) -> ItemSpec:
    """Convert an LLaVA-RLHF human preference row; the output not preferred is the more hallucinated one."""
    _require(record, LLAVA_RLHF)
    turns = [
        _llava_turn(turn, f"conversations[{i}]")
        for i, turn in enumerate(expect_list(record["conversations"], "conversations"))
    ]
    last_human = max((i for i, turn in enumerate(turns) if turn["role"] == "user"), default=None)
    if last_human is None:
        raise LineError("conversations: expected a human turn, the question the outputs answer")
    after = turns[last_human + 1 :]
    if len(after) > 1:
        raise LineError(f"conversations: expected at most one gpt turn after the last human turn, got {len(after)}")
    preference = record["preference"]
    if not _is_int(preference) or preference not in (1, 2):
        raise LineError(
            f"preference: expected 1 (output_1 is better) or 2 (output_2 is better), got {show_value(preference)}"
        )
    reference = after[0]["text"] if after else ""
    image, kept = row_image(record)
    return _item(
        record,
        layout=LLAVA_RLHF,
        source="llava-rlhf",
        digest=row_digest(record),
        image=image,
        prompt=_prompt_text(turns[last_human]["text"], f"conversations[{last_human}].value"),
        options=tuple(_llava_output(record[key], key) for key in ("output_1", "output_2")),
        worse=2 - preference,
        derived={"context": turns[:last_human], "reference_answer": reference, **kept},
    )


def vl_rewardbench_item_spec(record: dict[str, Any]) -> ItemSpec:
    """Convert a VL-RewardBench row; the response ranked 1 (not preferred) is the more hallucinated one."""
    _require(record, VL_REWARDBENCH)
    texts = expect_list(record["response"], "response")
    if len(texts) != 2:
        raise LineError(f"response: expected the 2 responses that were ranked, got {len(texts)}")
    models = _models(record.get("models"))
    ranking = record["human_ranking"]
    if ranking not in ([0, 1], [1, 0]) or not all(_is_int(rank) for rank in ranking):
        raise LineError(
            f"human_ranking: expected [0, 1] or [1, 0], 0 for the preferred response, got {show_value(ranking)}"
        )
    ground_truth = expect_string(given(record.get("ground_truth"), ""), "ground_truth", empty=True)
    image, kept = row_image(record)
    return _item(
        record,
        layout=VL_REWARDBENCH,
        source="vl-rewardbench",
        digest=row_digest(record),
        image=image,
        prompt=_prompt_text(expect_string(record["query"], "query"), "query"),
        options=tuple(
            ResponseSpec(f"response_{i}", expect_string(text, f"response[{i}]", empty=True), models[i])
            for i, text in enumerate(texts)
        ),
        worse=ranking.index(1),
        facts={"answer": ground_truth} if ground_truth.strip() else {},
        mapped=("models", "ground_truth"),
        derived=kept,
    )


def _item(
    record: dict[str, Any],
    *,
    layout: Layout,
    source: str,
    digest: str,
    image: str,
    prompt: str,
    options: tuple[ResponseSpec, ...],
    worse: int,
    facts: dict[str, Any] | None = None,
    derived: dict[str, Any] | None = None,
    mapped: tuple[str, ...] = (),
) -> ItemSpec:
    """Build the item of two options (in the row's order), `options[worse]` named more hallucinated.

    `derived` are meta fields made from the row (left out when empty), `mapped` the optional fields that
    went elsewhere; the row's other fields are kept in meta.
    """
    a, b = (options[1], options[0]) if row_flipped(digest) else options
    more_hallucinated: Answer = "a" if a is options[worse] else "b"
    return ItemSpec(
        external_id=_external_id(record, source, digest),
        image=image,
        prompt=prompt,
        responses=(a, b),
        pairs=((a.id, b.id),),
        facts=facts or {},
        meta=_meta(record, mapped=(*layout.fields, *mapped, IMAGE_PATH, "id"), derived=derived or {}),
        priors=(LabelSpec(pair=0, more_hallucinated=more_hallucinated, source=source),),
        gold=(),
    )


def _require(record: dict[str, Any], layout: Layout) -> None:
    missing = [key for key in layout.fields if key not in record and not (key == "image" and IMAGE_PATH in record)]
    if missing:
        fields = ", ".join(layout.fields)
        raise MissingFieldError(f"missing required field {missing[0]!r}; a {layout.name} row has the fields {fields}")


def row_digest(record: dict[str, Any]) -> str:
    """Return the SHA-256 of the row's canonical JSON, so equal rows hash alike whatever their key order."""
    # ensure_ascii: a lone surrogate (valid in JSON text) cannot be encoded as UTF-8.
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def row_flipped(digest: str) -> bool:
    """Return whether the row's second option becomes canonical a: one bit of its digest, half of the rows."""
    return int(digest[-1], 16) % 2 == 1


def _external_id(record: dict[str, Any], source: str, digest: str) -> str:
    value = record.get("id")
    if value is None:
        return f"{source}-{digest[:ID_HEX_DIGITS]}"
    if _is_int(value):
        return str(value)
    return expect_string(value, "id", max_length=MAX_ID_LENGTH)


def _is_int(value: object) -> bool:
    # JSON true is a Python int, and 1.0 == 1: neither is an integer in a row.
    return isinstance(value, int) and not isinstance(value, bool)


def _meta(record: dict[str, Any], *, mapped: tuple[str, ...], derived: dict[str, Any]) -> dict[str, Any]:
    """Keep the row's fields that `mapped` does not name, then add the non-empty `derived` ones."""
    meta = {key: value for key, value in record.items() if key not in mapped}
    derived = {key: value for key, value in derived.items() if value}
    clash = sorted(set(meta) & set(derived))
    if clash:
        raise LineError(f"{clash[0]}: RewardLab keeps its own {clash[0]!r} in meta for this row; rename the field")
    return {**meta, **derived}


def _prompt_text(text: str, where: str) -> str:
    prompt = text.replace(IMAGE_TOKEN, "").strip()
    if not prompt:
        raise LineError(f"{where}: expected the question as text, got {show_value(text)}")
    return prompt


def _turn(role: str, text: str) -> dict[str, str]:
    """Return a turn of meta["context"]: the same shape for every layout, image tokens left out."""
    return {"role": role, "text": text.replace(IMAGE_TOKEN, "").strip()}


def _trl_prompt(value: object) -> tuple[list[dict[str, str]], str]:
    """Return the turns before the question, and the question: the prompt itself, or its last user message."""
    if isinstance(value, str):
        return [], _prompt_text(value, "prompt")
    turns = _messages(value, "prompt")
    if not turns or turns[-1]["role"] != "user":
        raise LineError(f"prompt: expected a string or messages that end with a user message, got {show_value(value)}")
    return [_turn(**turn) for turn in turns[:-1]], _prompt_text(turns[-1]["text"], f"prompt[{len(turns) - 1}]")


def _trl_answer(value: object, key: str) -> str:
    if isinstance(value, str):
        return value
    turns = _messages(value, key)
    if len(turns) != 1 or turns[0]["role"] != "assistant":
        raise LineError(f"{key}: expected a string or one assistant message, got {show_value(value)}")
    return turns[0]["text"]


def trl_texts(record: dict[str, Any]) -> tuple[str, str, str]:
    """Return a TRL preference row's question, chosen and rejected text, standard (strings) or conversational."""
    missing = [key for key in ("prompt", "chosen", "rejected") if key not in record]
    if missing:
        raise LineError(f"missing required field {missing[0]!r}; a TRL row has prompt, chosen and rejected")
    _, prompt = _trl_prompt(record["prompt"])
    return prompt, _trl_answer(record["chosen"], "chosen"), _trl_answer(record["rejected"], "rejected")


def _messages(value: object, where: str) -> list[dict[str, str]]:
    """Return the role and text of each message of a TRL conversation."""
    if not isinstance(value, list):
        raise LineError(f"{where}: expected a string or a list of messages, got {show_value(value)}")
    turns = []
    for index, message in enumerate(value):
        at = f"{where}[{index}]"
        message = expect_object(message, at)
        role = expect_string(message.get("role"), f"{at}.role")
        turns.append({"role": role, "text": _content_text(message.get("content"), f"{at}.content")})
    return turns


def _content_text(value: object, where: str) -> str:
    """Return a message's text: the content string, or its text parts joined (image parts stand for the image)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise LineError(f"{where}: expected a string or a list of parts, got {show_value(value)}")
    texts = []
    for index, part in enumerate(value):
        at = f"{where}[{index}]"
        kind = expect_object(part, at).get("type")
        if kind == "text":
            texts.append(expect_string(part.get("text"), f"{at}.text", empty=True))
        elif kind != "image":
            raise LineError(f'{at}.type: expected "text" or "image", got {show_value(kind)}')
    return "\n".join(texts)


def _one_image(value: object) -> str:
    images = expect_list(value, "images")
    if len(images) != 1:
        raise LineError(f"images: expected one image, as an item shows one, got {len(images)}")
    return expect_string(images[0], "images[0]")


def _llava_turn(value: object, where: str) -> dict[str, str]:
    turn = expect_object(value, where)
    speaker = turn.get("from")
    if not isinstance(speaker, str) or speaker not in LLAVA_ROLES:
        raise LineError(f'{where}.from: expected "human" or "gpt", got {show_value(speaker)}')
    return _turn(LLAVA_ROLES[speaker], expect_string(turn.get("value"), f"{where}.value", empty=True))


def _llava_output(value: object, key: str) -> ResponseSpec:
    output = expect_object(value, key)
    text = expect_string(output.get("value"), f"{key}.value", empty=True)
    model = expect_string(given(output.get("from"), ""), f"{key}.from", max_length=MAX_MODEL_LENGTH, empty=True)
    return ResponseSpec(key, text, model)


def _models(value: object) -> tuple[str, str]:
    """Return the model of each response; VL-RewardBench's `models` is optional here, and null counts as absent."""
    if value is None:
        return "", ""
    models = expect_list(value, "models")
    if len(models) != 2:
        raise LineError(f"models: expected one model per response, 2, got {len(models)}")
    first, second = (
        expect_string(m, f"models[{i}]", max_length=MAX_MODEL_LENGTH, empty=True) for i, m in enumerate(models)
    )
    return first, second
