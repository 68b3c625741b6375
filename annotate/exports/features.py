"""Each export format's columns as Hugging Face `datasets` features: for the Parquet container's schema and card.

A Parquet snapshot is read by `datasets` without RewardLab, so its types are stated, not inferred: every
column of every format has a feature here (`features_of` refuses a column without one), written in the
JSON form `datasets` itself stores (`Features.to_dict()`), from which come the Arrow schema, the
`huggingface` schema metadata (what `datasets` reads back as the features, `Image` included) and the
README's YAML `dataset_info.features`. Rows are put in that shape by `row_encoder`.

Image columns are `Image` features: `{"bytes", "path"}` structs holding the file, so the dataset loads as
PIL images from any working directory. Objects whose keys vary from row to row (`facts`, `meta`, `spans`)
are JSON text in Parquet: a Parquet schema is fixed before the first row, and a struct would drop the
keys it did not foresee.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping

import pyarrow as pa

from annotate.exports.formats import Format
from annotate.exports.rows import SCORE_FIELDS


def value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def sequence(feature: dict) -> dict:
    return {"feature": feature, "_type": "List"}


STRING, INT, FLOAT, BOOL = value("string"), value("int64"), value("float64"), value("bool")
IMAGE = {"_type": "Image"}
JSON_TEXT = {**STRING, "json": True}  # a string column holding JSON; the marker is dropped from what is written
# A struct is a plain mapping of field name to feature, as datasets writes it.
MESSAGES = sequence({"role": STRING, "content": sequence({"type": STRING, "text": STRING})})  # TRL, with images
TEXT_MESSAGES = sequence({"role": STRING, "content": STRING})  # TRL, text only
TURN = {"from": STRING, "value": STRING}  # ShareGPT / LLaVA
ANSWER = {"id": STRING, "text": STRING, "model": STRING}

_COMMON = {
    "external_id": STRING,
    "pair": sequence(STRING),
    "models": sequence(STRING),
    "strength": INT,
    "weight": FLOAT,
    "agreement": FLOAT,
    "n_labels": INT,
    "label_source": STRING,
    "split": STRING,
    "facts": JSON_TEXT,
    "meta": JSON_TEXT,
    **dict.fromkeys(SCORE_FIELDS, FLOAT),
    "chosen_id": STRING,
    "rejected_id": STRING,
    "margin": FLOAT,
    # `reward` and `trl-dpo`: the rejected answer's marked spans; fixed keys, so a typed struct, not JSON text.
    "spans": sequence({"start": INT, "end": INT, "text": STRING, "type": STRING, "annotators": INT}),
}
# Each format's own columns, where they differ from _COMMON or share a name with another type.
_OWN = {
    "reward": {"prompt": TEXT_MESSAGES, "chosen": TEXT_MESSAGES, "rejected": TEXT_MESSAGES, "images": sequence(IMAGE)},
    "trl-dpo": {"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES, "images": sequence(IMAGE)},
    "mdpo": {
        "img_path": STRING,
        "prompt": STRING,
        "chosen": STRING,
        "rejected": STRING,
        "images": sequence(IMAGE),
        "corrupted_images": sequence(IMAGE),
        "prompt_messages": MESSAGES,
        "chosen_messages": MESSAGES,
        "rejected_messages": MESSAGES,
    },
    "llamafactory": {"conversations": sequence(TURN), "chosen": TURN, "rejected": TURN, "images": sequence(IMAGE)},
    "llava-rlhf": {
        "id": STRING,
        "image": IMAGE,
        "conversations": sequence(TURN),
        "output_1": TURN,
        "output_2": TURN,
        "preference": INT,
    },
    "kto": {
        "prompt": MESSAGES,
        "completion": MESSAGES,
        "label": BOOL,
        "images": sequence(IMAGE),
        "response_id": STRING,
        "more_hallucinated": STRING,
    },
    "annotations": {
        "prompt": STRING,
        "image": IMAGE,
        "a": ANSWER,
        "b": ANSWER,
        "more_hallucinated": STRING,
        "hallucination_types": sequence(STRING),
        "spans": JSON_TEXT,
        "rationale": STRING,
        "annotator": STRING,
        "shown_left": STRING,
        "duration_ms": INT,
        "created_at": STRING,
        "gold_answer": STRING,
    },
}


def features_of(fmt: Format, *, images: bool) -> dict[str, dict]:
    """Return the format's features in its column order; without images, an image column is its path (text)."""
    own = _OWN[fmt.name]
    missing = [name for name in fmt.columns if name not in own and name not in _COMMON]
    if missing:
        raise ValueError(f"Format {fmt.name!r} has no feature for column {missing[0]!r}")
    features = {name: own.get(name, _COMMON.get(name)) for name in fmt.columns}
    return features if images else {name: _without_images(feature) for name, feature in features.items()}


def _without_images(feature: dict) -> dict:
    if feature == IMAGE:
        return STRING
    if feature.get("_type") == "List":
        return sequence(_without_images(feature["feature"]))
    return feature


def image_columns(features: Mapping[str, dict]) -> dict[str, bool]:
    """Return {column: holds a list} of the Image columns."""
    columns = {}
    for name, feature in features.items():
        if feature == IMAGE:
            columns[name] = False
        elif feature == sequence(IMAGE):
            columns[name] = True
    return columns


def json_columns(features: Mapping[str, dict]) -> list[str]:
    return [name for name, feature in features.items() if feature.get("json")]


def stored(feature: dict) -> dict:
    """Return the feature as datasets stores it (`Features.to_dict()`): without RewardLab's JSON marker."""
    if feature.get("json"):
        return STRING
    if feature.get("_type") == "List":
        return sequence(stored(feature["feature"]))
    if "_type" not in feature:
        return {name: stored(field) for name, field in feature.items()}
    return feature


_ARROW_VALUES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}


def arrow_type(feature: dict) -> pa.DataType:
    """Return the Arrow type datasets gives the feature (an Image is struct<bytes: binary, path: string>)."""
    kind = feature.get("_type")
    if kind == "Value":
        return _ARROW_VALUES[feature["dtype"]]
    if kind == "Image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if kind == "List":
        return pa.list_(arrow_type(feature["feature"]))
    return pa.struct([(name, arrow_type(field)) for name, field in feature.items()])


def arrow_schema(features: Mapping[str, dict]) -> pa.Schema:
    """Return the schema with the `huggingface` metadata datasets writes, so it reads the features back."""
    metadata = {"info": {"features": {name: stored(feature) for name, feature in features.items()}}}
    fields = [(name, arrow_type(feature)) for name, feature in features.items()]
    return pa.schema(fields).with_metadata({"huggingface": json.dumps(metadata)})


def yaml_features(features: Mapping[str, dict]) -> list[dict]:
    """Return the README's `dataset_info.features`, as datasets' `Features._to_yaml_list` writes them."""
    return [{"name": name, **_yaml(stored(feature))} for name, feature in features.items()]


def _yaml(feature: dict) -> dict:
    kind = feature.get("_type")
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind == "Image":
        return {"dtype": "image"}
    if kind == "List":
        inner = _yaml(feature["feature"])
        # A list of plain values or images is written `list: string`, a list of structs `list: [fields]`.
        return {"list": inner.get("dtype", inner.get("struct"))}
    return {"struct": [{"name": name, **_yaml(field)} for name, field in feature.items()]}


RowEncoder = Callable[[dict, Mapping[str, bytes]], dict]


def row_encoder(features: Mapping[str, dict]) -> RowEncoder:
    """Return encode(row, files): the row as its Parquet columns hold it, image paths as embedded files
    (`files` maps a path in the row to its bytes; the struct's `path` keeps the file name, as datasets does)
    and objects as JSON text."""
    images = image_columns(features)
    json_keys = json_columns(features)

    def encode(row: dict, files: Mapping[str, bytes]) -> dict:
        out = dict(row)
        for name, is_list in images.items():
            paths = row[name]
            out[name] = [_embedded(path, files) for path in paths] if is_list else _embedded(paths, files)
        for name in json_keys:
            out[name] = json.dumps(row[name], ensure_ascii=False, separators=(",", ":"))
        return out

    return encode


def _embedded(path: str, files: Mapping[str, bytes]) -> dict:
    return {"bytes": files[path], "path": posixpath.basename(path)}
