"""Each export format's rows, as pure functions of one `PairRow` (or `AnnotationRow`), and their columns.

Every paired format (`reward`, `trl-dpo`, `mdpo`, `llamafactory`, `llava-rlhf`) is made from the same
pair row and carries the same provenance columns after its own (`PAIRED_EXTRA`): the pair's identity in
canonical a/b (so `rewardlab.readers` rebuilds the pair and an import keeps it in `meta`), how its label was
made, its weight and margin, and the model's scores. Only pairs whose label names a side (`a` or `b`)
become paired rows: chosen is the less hallucinated response, rejected the more hallucinated one.
`kto` makes unpaired rows from every labeled pair, `both` and `neither` included.

Column names follow what the tools read (checked against their sources):
- TRL (`RewardTrainer`, `DPOTrainer`, `KTOTrainer`): `prompt`, `chosen`, `rejected`, optional `margin`
  (RewardTrainer's collator), `images`; unpaired `prompt`, `completion`, `label`. Conversational messages
  are `{"role", "content": [{"type": "image"} | {"type": "text", "text"}]}`, as trl-lib/rlaif-v. `reward`
  is conversational with text content: RewardTrainer (1.16) concatenates an explicit prompt and answer,
  which only TRL's conversational layout (or a completion carrying its own separator) makes readable.
- mDPO (luka-group/mDPO, bunny/data_collator_bunny_phi.py): `prompt` (a Bunny-template string with
  `<image>`), `chosen`, `rejected` (strings) and `img_path` (opened relative to the working directory).
- LLaMA-Factory (data/README.md, "Sharegpt Format", preference + multimodal image dataset):
  `conversations` of `{"from", "value"}` with one `<image>` token per image, `chosen`/`rejected` messages,
  `images`, registered in `dataset_info.json` with `formatting: sharegpt` and `ranking: true`.
- LLaVA-RLHF (LLaVA-Human-Preference-10K): `id`, `image`, `conversations`, `output_1`, `output_2`,
  `preference` (1 or 2, the better output), which `rewardlab.package.public` imports back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from annotate.exports.rows import SCORE_FIELDS, AnnotationRow, PairRow

IMAGE_TOKEN = "<image>"  # LLaVA's and LLaMA-Factory's placeholder, one per image
CORRUPTED_DIR = "corrupted"
# mDPO's Bunny conversation template (luka-group/mDPO, bunny/bunny_utils/conversation.py, conv_bunny).
BUNNY_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
PAIRED_SIDES = ("a", "b")


@dataclass(frozen=True)
class Format:
    """How one format turns a row into JSONL rows, and what its columns mean (for the dataset card)."""

    name: str
    to_rows: Callable  # PairRow (or AnnotationRow for `annotations`) -> list[dict]
    columns: dict[str, str]  # the format's own columns
    paired: bool = True  # only pairs with a preferred side
    per_annotation: bool = False
    corrupted: bool = False  # writes mDPO's corrupted image per row
    spans: bool = False  # writes the rejected answer's marked spans (`rejected_spans`)


# Provenance columns, after each format's own.
COMMON_EXTRA = {
    "external_id": "the item's external_id (the import package's)",
    "pair": "the pair's two response ids in canonical order [a, b]",
    "models": "the model of each response, [a, b]",
    "strength": "the label's strength (1..S) when it names a side, else null",
    "weight": "training weight: the model run's SFC weight (1 without a run), × the prior trust for a prior label",
    "agreement": "how sure the label is: Dawid–Skene probability or the share of votes for it (gold: share agreeing)",
    "n_labels": "labels behind the label (human, or prior where no human label exists)",
    "label_source": "human (consensus), prior (majority of prior labels) or gold (the known answer)",
    "split": "train or test, drawn per image: no image (so no item) is in both",
    "facts": "the item's facts (captions, known answers), {} when none",
    "meta": "the item's meta (e.g. qtype), {} when none",
    **{name: f"the model run's `{name}` for the pair (null without a model run)" for name in SCORE_FIELDS},
}
PAIRED_EXTRA = {
    "chosen_id": "the response id of chosen (the less hallucinated)",
    "rejected_id": "the response id of rejected (the more hallucinated)",
    "margin": "Bradley–Terry margin of the label's strength (the campaign's margins; 0 without a strength)",
    **COMMON_EXTRA,
}


SPANS_HELP = (
    "hallucinated spans humans marked in the rejected answer, RLHF-V-style fine-grained feedback: "
    "[{start, end, text, type, annotators}], character offsets in rejected's text, type null when not given, "
    "annotators = how many marked exactly that span with that type"
)


def rejected_spans(row: PairRow) -> list[dict]:
    """Return the spans the pair's human labels marked in the rejected (more hallucinated) answer, with their text.

    Spans on the chosen answer are left out: a row's fine-grained feedback is about what it rejects, as
    RLHF-V's segment-level corrections are. The same span marked by several annotators is one entry.
    """
    side = row.verdict.more_hallucinated
    text = row.a.text if side == "a" else row.b.text
    counts = Counter((span["start"], span["end"], span.get("type")) for span in row.spans if span["response"] == side)
    ordered = sorted(counts.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or ""))
    return [
        {"start": start, "end": end, "text": text[start:end], "type": kind, "annotators": n}
        for (start, end, kind), n in ordered
    ]


def _sides(row: PairRow):
    """Return (chosen, rejected): the more hallucinated response is the rejected one."""
    return (row.a, row.b) if row.verdict.more_hallucinated == "b" else (row.b, row.a)


def _common(row: PairRow) -> dict:
    return {
        "external_id": row.item.external_id,
        "pair": [row.a.id, row.b.id],
        "models": [row.a.model, row.b.model],
        "strength": row.verdict.strength,
        "weight": row.weight,
        "agreement": row.verdict.agreement,
        "n_labels": row.verdict.n_labels,
        "label_source": row.verdict.source,
        "split": row.item.split,
        "facts": row.item.facts,
        "meta": row.item.meta,
        **row.scores,
    }


def _paired_extra(row: PairRow) -> dict:
    chosen, rejected = _sides(row)
    return {"chosen_id": chosen.id, "rejected_id": rejected.id, "margin": row.margin, **_common(row)}


def user_turn(prompt: str) -> list[dict]:
    """Return TRL's conversational prompt: one user message holding the image, then the question."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def assistant_turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def _plain_prompt(prompt: str) -> str:
    """Return the question without image tokens of its own, so a row has exactly one per image."""
    return prompt.replace(IMAGE_TOKEN, "").strip()


def corrupted_name(row: PairRow) -> str:
    """Return where mDPO's corrupted image of this pair goes in the snapshot."""
    return f"{CORRUPTED_DIR}/{row.pair_id}.png"


def reward_rows(row: PairRow) -> list[dict]:
    """Return TRL's conversational preference row, text only: RewardTrainer's model reads no image.

    Conversational, not standard: TRL joins an explicit prompt and its answer by plain concatenation
    (`prompt + chosen`), so plain strings ran "...square?The square is orange." together; messages go
    through the model's chat template, which puts the roles and separators the model was tuned with.
    """
    chosen, rejected = _sides(row)
    own = {
        "prompt": [{"role": "user", "content": row.item.prompt}],
        "chosen": [{"role": "assistant", "content": chosen.text}],
        "rejected": [{"role": "assistant", "content": rejected.text}],
        "images": [row.item.image],
        "spans": rejected_spans(row),
    }
    return [{**own, **_paired_extra(row)}]


def trl_dpo_rows(row: PairRow) -> list[dict]:
    chosen, rejected = _sides(row)
    own = {
        "prompt": user_turn(row.item.prompt),
        "chosen": assistant_turn(chosen.text),
        "rejected": assistant_turn(rejected.text),
        "images": [row.item.image],
        "spans": rejected_spans(row),
    }
    return [{**own, **_paired_extra(row)}]


def bunny_prompt(question: str) -> str:
    """Return the question in the Bunny template mDPO trains with (its conv_bunny, one `<image>` first)."""
    return f"{BUNNY_SYSTEM} USER: {IMAGE_TOKEN}\n{_plain_prompt(question)} ASSISTANT:"


def mdpo_rows(row: PairRow) -> list[dict]:
    """Return mDPO's own row (`img_path`, Bunny `prompt`, string answers), TRL's messages beside it.

    mDPO's collator reads `prompt`, `chosen`, `rejected` as strings and opens `img_path`; TRL's message
    lists, which those names held before, are kept as `*_messages` for a DPO trainer built on TRL.
    """
    chosen, rejected = _sides(row)
    own = {
        "img_path": row.item.image,
        "prompt": bunny_prompt(row.item.prompt),
        "chosen": chosen.text,
        "rejected": rejected.text,
        "images": [row.item.image],
        "corrupted_images": [corrupted_name(row)],
        "prompt_messages": user_turn(row.item.prompt),
        "chosen_messages": assistant_turn(chosen.text),
        "rejected_messages": assistant_turn(rejected.text),
    }
    return [{**own, **_paired_extra(row)}]


def llamafactory_rows(row: PairRow) -> list[dict]:
    chosen, rejected = _sides(row)
    own = {
        "conversations": [{"from": "human", "value": IMAGE_TOKEN + _plain_prompt(row.item.prompt)}],
        "chosen": {"from": "gpt", "value": chosen.text},
        "rejected": {"from": "gpt", "value": rejected.text},
        "images": [row.item.image],
    }
    return [{**own, **_paired_extra(row)}]


def llava_rlhf_rows(row: PairRow) -> list[dict]:
    """Return LLaVA-RLHF's row: output_1 is a, output_2 is b, `preference` names the better one."""
    own = {
        # One row per pair: the item's external_id alone would repeat for an item with several pairs.
        "id": f"{row.item.external_id}:{row.a.id}:{row.b.id}",
        "image": row.item.image,
        "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\n{_plain_prompt(row.item.prompt)}"}],
        "output_1": {"from": "llava", "value": row.a.text},
        "output_2": {"from": "llava", "value": row.b.text},
        "preference": 2 if row.verdict.more_hallucinated == "a" else 1,
    }
    return [{**own, **_paired_extra(row)}]


# A pair label's verdict on each response: is it desirable (not the more hallucinated one)?
KTO_DESIRABLE = {"a": (False, True), "b": (True, False), "both": (False, False), "neither": (True, True)}


def kto_rows(row: PairRow) -> list[dict]:
    """Return one unpaired row per response: `both` makes two undesirable rows, `neither` two desirable."""
    labels = KTO_DESIRABLE[row.verdict.more_hallucinated]
    return [
        {
            "prompt": user_turn(row.item.prompt),
            "completion": assistant_turn(answer.text),
            "label": label,
            "images": [row.item.image],
            "response_id": answer.id,
            "more_hallucinated": row.verdict.more_hallucinated,
            **_common(row),
        }
        for answer, label in zip((row.a, row.b), labels, strict=True)
    ]


def annotation_rows(row: AnnotationRow) -> list[dict]:
    """Return the raw label in the layout `rewardlab.readers` reads as an annotations export."""
    return [
        {
            "external_id": row.item.external_id,
            "pair": [row.a.id, row.b.id],
            "prompt": row.item.prompt,
            "image": row.item.image,
            "a": {"id": row.a.id, "text": row.a.text, "model": row.a.model},
            "b": {"id": row.b.id, "text": row.b.text, "model": row.b.model},
            "facts": row.item.facts,
            "meta": row.item.meta,
            "more_hallucinated": row.more_hallucinated,
            "strength": row.strength,
            "hallucination_types": row.hallucination_types,
            "spans": row.spans,
            "rationale": row.rationale,
            "annotator": row.annotator,
            "shown_left": row.shown_left,
            "duration_ms": row.duration_ms,
            "created_at": row.created_at.isoformat(),
            "gold_answer": row.gold_answer,
            "split": row.item.split,
        }
    ]


_TRL_PREFERENCE = {
    "prompt": "the question: a user message with the image and the text",
    "chosen": "the less hallucinated answer, an assistant message",
    "rejected": "the more hallucinated answer, an assistant message",
    "images": "the image's path in the snapshot, one per row",
}

FORMATS: dict[str, Format] = {
    "reward": Format(
        "reward",
        reward_rows,
        {
            "prompt": 'the question: [{"role": "user", "content": text}] (TRL reads it)',
            "chosen": 'the less hallucinated answer: [{"role": "assistant", "content": text}] (TRL reads it)',
            "rejected": 'the more hallucinated answer: [{"role": "assistant", "content": text}] (TRL reads it)',
            "images": "the image's path in the snapshot, one per row (TRL's RewardTrainer ignores it: text only)",
            "spans": f"{SPANS_HELP} (TRL ignores it)",
            **PAIRED_EXTRA,
            "margin": f"{PAIRED_EXTRA['margin']} (TRL's RewardTrainer subtracts it in its loss)",
            "weight": f"{PAIRED_EXTRA['weight']} (TRL's RewardTrainer ignores it)",
        },
        spans=True,
    ),
    "trl-dpo": Format(
        "trl-dpo",
        trl_dpo_rows,
        {**_TRL_PREFERENCE, "spans": f"{SPANS_HELP} (TRL ignores it)", **PAIRED_EXTRA},
        spans=True,
    ),
    "mdpo": Format(
        "mdpo",
        mdpo_rows,
        {
            "img_path": "the image's path in the snapshot, which mDPO's collator opens (run it in this folder)",
            "prompt": "the question in mDPO's Bunny template: system, USER: <image>\\n question, ASSISTANT:",
            "chosen": "the less hallucinated answer (text)",
            "rejected": "the more hallucinated answer (text)",
            "images": "the image's path in the snapshot, one per row",
            "corrupted_images": "mDPO's corrupted image (a seeded random crop of 1-20% of the area, resized back)",
            "prompt_messages": "TRL's conversational prompt: a user message with the image and the text",
            "chosen_messages": "chosen as an assistant message (TRL)",
            "rejected_messages": "rejected as an assistant message (TRL)",
            **PAIRED_EXTRA,
        },
        corrupted=True,
    ),
    "llamafactory": Format(
        "llamafactory",
        llamafactory_rows,
        {
            "conversations": 'the question: [{"from": "human", "value": "<image>..."}]',
            "chosen": 'the less hallucinated answer: {"from": "gpt", "value": ...}',
            "rejected": 'the more hallucinated answer: {"from": "gpt", "value": ...}',
            "images": "the image's path in the snapshot, one per <image> token",
            **PAIRED_EXTRA,
        },
    ),
    "llava-rlhf": Format(
        "llava-rlhf",
        llava_rlhf_rows,
        {
            "id": "external_id:a:b, unique per pair",
            "image": "the image's path in the snapshot",
            "conversations": 'the question: [{"from": "human", "value": "<image>\\n..."}]',
            "output_1": 'response a: {"from": "llava", "value": ...}',
            "output_2": 'response b: {"from": "llava", "value": ...}',
            "preference": "1 when output_1 is better (b is more hallucinated), 2 when output_2 is",
            **PAIRED_EXTRA,
        },
    ),
    "kto": Format(
        "kto",
        kto_rows,
        {
            "prompt": "the question: a user message with the image and the text",
            "completion": "one response, an assistant message",
            "label": "true when the response is desirable (not the more hallucinated one)",
            "images": "the image's path in the snapshot, one per row",
            "response_id": "the completion's response id",
            "more_hallucinated": "the pair's label: a, b, both (two undesirable rows) or neither (two desirable)",
            **COMMON_EXTRA,
        },
        paired=False,
    ),
    "annotations": Format(
        "annotations",
        annotation_rows,
        {
            "external_id": "the item's external_id",
            "pair": "the pair's response ids [a, b]",
            "prompt": "the question (text)",
            "image": "the image's path in the snapshot",
            "a": "response a: {id, text, model}",
            "b": "response b: {id, text, model}",
            "facts": "the item's facts",
            "meta": "the item's meta",
            "more_hallucinated": "the label: a, b, both or neither (canonical a/b)",
            "strength": "1..S for a/b, null for both/neither",
            "hallucination_types": "the types the annotator ticked",
            "spans": "hallucinated character spans [{response, start, end, type?}], offsets in that response's text",
            "rationale": "the annotator's rationale",
            "annotator": "a pseudonymous annotator id, stable within the campaign only",
            "shown_left": "the side shown on the left (a or b)",
            "duration_ms": "time to label, when recorded",
            "created_at": "when the label was saved (UTC, ISO 8601)",
            "gold_answer": "the known answer of a gold pair, else empty",
            "split": "train or test, drawn per image: no image (so no item) is in both",
        },
        paired=False,
        per_annotation=True,
    ),
}


def keeps(fmt: Format, row: PairRow) -> str | None:
    """Return why the format has no row for this pair (its label names no side, or ties), or None."""
    choice = row.verdict.more_hallucinated
    if choice is None:
        return "tied labels"
    if fmt.paired and choice not in PAIRED_SIDES:
        return f"label {choice} (no preferred side)"
    return None


def dataset_info(name: str, files: dict[str, str]) -> dict:
    """Return LLaMA-Factory's dataset_info.json: one entry per split file (`files`: split -> file name)."""
    entry = {
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    }
    return {
        (name if split == "train" else f"{name}_{split}"): {"file_name": file_name, **entry}
        for split, file_name in files.items()
    }
