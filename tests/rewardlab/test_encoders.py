"""Frozen encoders (rewardlab.encoders, .cache, .shapes): local models only, each content encoded once."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from rewardlab.cache import EmbeddingCache, content_key
from rewardlab.encoders import (
    SentenceTransformerText,
    TransformersText,
    VisionTower,
    encode_cached,
    image_encoder_load,
    text_encoder_load,
)
from rewardlab.shapes import GEOMETRY, MAX_OBJECTS, PALETTE, TOKENS, ShapesEncoder, shape_tokens
from rewardlab.synthetic import Scene, Shape
from tests.rewardlab.tiny import save_tiny_bert

COLOUR_NAMES = list(PALETTE)
WORDS = "there are two three red blue circles square in the image is a . ?".split()
VISION = {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}


class CountingEncoder:
    """Encoder protocol: row = [byte length, first byte]; records what it was asked to encode."""

    shape = (2,)
    dtype = "float16"

    def __init__(self, name: str = "test:count:v1") -> None:
        self.name = name
        self.calls: list[list[bytes]] = []

    def encode(self, contents: list[bytes]) -> np.ndarray:
        self.calls.append(list(contents))
        return np.array([[len(data), data[0]] for data in contents], dtype=np.float32)


def column(name: str) -> int:
    """Return the column of a geometry feature in a shape token."""
    return 2 + len(PALETTE) + GEOMETRY.index(name)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def two_red_circles_and_a_blue_square() -> Scene:
    return Scene(
        (
            Shape("circle", "red", 16, 16, 20),
            Shape("circle", "red", 80, 16, 20),
            Shape("square", "blue", 48, 64, 24),
        )
    )


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(**VISION, intermediate_size=24)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-siglip")
    torch.manual_seed(0)
    SiglipVisionModel(SiglipVisionConfig(**VISION, intermediate_size=24)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def minilm():
    return text_encoder_load()


@pytest.fixture(scope="module")
def scene_pngs() -> list[bytes]:
    other = Scene((Shape("triangle", "green", 30, 60, 28),))
    return [png(two_red_circles_and_a_blue_square().render()), png(other.render())]


# The cache.


def test_encode_cached_encodes_each_distinct_content_once():
    encoder = CountingEncoder()
    with EmbeddingCache(None) as cache:
        out = encode_cached(encoder, [b"ab", b"c", b"ab"], cache, progress=False)
    # rows: [len, first byte]; "a" = 97, "c" = 99
    assert out.tolist() == [[2, 97], [1, 99], [2, 97]]
    assert encoder.calls == [[b"ab", b"c"]]


def test_a_second_call_is_served_from_the_cache():
    encoder = CountingEncoder()
    with EmbeddingCache(None) as cache:
        first = encode_cached(encoder, [b"ab", b"c"], cache, progress=False)
        again = encode_cached(encoder, [b"c", b"ab", b"xyz"], cache, progress=False)
    assert encoder.calls == [[b"ab", b"c"], [b"xyz"]]  # only the new content is encoded
    assert again.tolist() == [first[1].tolist(), first[0].tolist(), [3, 120]]


def test_a_renamed_encoder_misses_the_cache():
    with EmbeddingCache(None) as cache:
        encode_cached(CountingEncoder("test:count:v1"), [b"ab"], cache, progress=False)
        renamed = CountingEncoder("test:count:v2")
        encode_cached(renamed, [b"ab"], cache, progress=False)
    assert renamed.calls == [[b"ab"]]
    assert content_key("test:count:v1", b"ab") != content_key("test:count:v2", b"ab")


def test_the_cache_outlives_the_process_that_wrote_it(tmp_path):
    with EmbeddingCache(tmp_path) as cache:
        encode_cached(CountingEncoder(), [b"ab"], cache, progress=False)
    encoder = CountingEncoder()
    with EmbeddingCache(tmp_path) as cache:
        assert len(cache) == 1
        assert encode_cached(encoder, [b"ab"], cache, progress=False).tolist() == [[2, 97]]
    assert encoder.calls == []


def test_an_existing_key_keeps_its_first_value():
    with EmbeddingCache(None) as cache:
        cache.put_many([("k", np.array([1.0, 2.0]))], dtype="float16")
        cache.put_many([("k", np.array([5.0, 6.0]))], dtype="float16")
        assert cache.get_many(["k", "missing"], shape=(2,), dtype="float16")["k"].tolist() == [1.0, 2.0]


# Text encoders.


def test_a_local_transformers_model_gives_unit_vectors_of_its_hidden_size(tiny_bert):
    encoder = text_encoder_load(str(tiny_bert))
    assert isinstance(encoder, TransformersText)
    assert encoder.shape == (32,) and encoder.name.startswith("text:hf:")
    out = encoder.encode([b"there are two red circles", b"a blue square"])
    assert out.shape == (2, 32)
    assert np.linalg.norm(out, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert not np.allclose(out[0], out[1])


def test_padding_does_not_change_a_texts_embedding(tiny_bert):
    # the mean runs over real tokens only, so a short text reads the same alone or beside a long one
    encoder = text_encoder_load(str(tiny_bert))
    alone = encoder.encode([b"a blue square"])
    padded = encoder.encode([b"a blue square", b"there are two red circles in the image . is there a blue square ?"])
    assert np.allclose(alone[0], padded[0], atol=1e-5)


def test_the_same_model_files_give_the_same_name(tiny_bert, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in tiny_bert.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert text_encoder_load(str(copy)).name == text_encoder_load(str(tiny_bert)).name


def test_default_text_encoder_is_minilm_with_unit_vectors(minilm):
    assert isinstance(minilm, SentenceTransformerText)
    assert minilm.shape == (384,)
    out = minilm.encode([b"There are two red circles.", b"Two red circles are in the image.", b"I like jazz music."])
    assert np.linalg.norm(out, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    # the paraphrase is closer than the unrelated sentence
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2


@pytest.mark.parametrize("load", [text_encoder_load, image_encoder_load])
def test_a_name_that_is_neither_built_in_nor_a_directory_is_refused(load, tmp_path):
    with pytest.raises(ValueError, match="neither a built-in name nor a local model directory"):
        load(str(tmp_path / "no-such-model"))


# Image encoders.


@pytest.mark.parametrize("tower", ["tiny_clip", "tiny_siglip"])
def test_vision_tower_gives_a_pooled_token_and_a_pooled_grid(tower, request, scene_pngs):
    encoder = image_encoder_load(str(request.getfixturevalue(tower)))
    assert isinstance(encoder, VisionTower)
    # 1 pooled token + a 4 x 4 grid; 1 presence column + hidden size 16
    assert encoder.shape == (17, 17)
    out = encoder.encode(scene_pngs)
    assert out.shape == (2, 17, 17)
    assert (out[..., 0] == 1).all()
    assert not np.allclose(out[0], out[1])


def test_vision_tower_refuses_a_model_that_is_not_a_vision_tower(tiny_bert):
    with pytest.raises(ValueError, match="expected one of"):
        image_encoder_load(str(tiny_bert))


def test_default_image_encoder_is_the_shapes_encoder(scene_pngs):
    encoder = image_encoder_load()
    assert isinstance(encoder, ShapesEncoder)
    out = encoder.encode(scene_pngs[:1])
    expected = shape_tokens(two_red_circles_and_a_blue_square().render())
    assert out.shape == (1, *encoder.shape)
    assert np.array_equal(out[0], expected)


def test_shape_tokens_find_each_object_with_its_colour():
    tokens = shape_tokens(two_red_circles_and_a_blue_square().render())
    present = tokens[:, 0] == 1
    assert present.sum() == 1 + 3  # the global token and three objects
    assert not present[4:].any() and not tokens[4:].any()  # padding is all zeros
    assert tokens[0, -1] == pytest.approx(3 / MAX_OBJECTS)  # the global token's object count
    # objects by decreasing area: the 24 x 24 square (576 px) before the two circles (π · 10² ≈ 314 px)
    colours = [COLOUR_NAMES[int(np.argmax(token[2 : 2 + len(PALETTE)]))] for token in tokens[1:4]]
    assert colours == ["blue", "red", "red"]
    assert tokens.shape == (TOKENS, 2 + len(PALETTE) + len(GEOMETRY))


def test_shape_tokens_measure_position_and_fill():
    tokens = shape_tokens(two_red_circles_and_a_blue_square().render())
    square, left_circle, right_circle = tokens[1], *sorted(tokens[2:4], key=lambda token: token[column("cx")])
    # centres over the 96 px side: the square at (48, 64) → (0.5, 0.667), the circles at x = 16 and 80
    assert (square[column("cx")], square[column("cy")]) == (
        pytest.approx(0.5, abs=0.01),
        pytest.approx(0.667, abs=0.01),
    )
    assert left_circle[column("cx")] == pytest.approx(16 / 96, abs=0.01)
    assert right_circle[column("cx")] == pytest.approx(80 / 96, abs=0.01)
    # a square fills its box; a disc fills about π/4 = 0.785 of it
    assert square[column("fill")] == pytest.approx(1.0, abs=0.02)
    assert left_circle[column("fill")] == pytest.approx(np.pi / 4, abs=0.05)
