"""Settings of the vision-language backend: the model and its adapters here, the objectives in TrainConfig.

This module imports no torch or transformers, so `rewardlab.pipeline` can tell a VLM run from a heads run
without loading either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from rewardlab.config import RunConfig, TrainConfig

BACKEND = "vlm"  # the `backend` an artifact and a run's config record; the default model records none
Dtype = Literal["auto", "bfloat16", "float32"]
DTYPES: tuple[str, ...] = get_args(Dtype)
# TrainConfig's defaults fit heads over cached embeddings; a fine-tune wants a smaller step, a few epochs
# and small batches. The curriculum grows to all samples over `curriculum_epochs`, so it must fit in them.
VLM_TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-4,
    "weight_decay": 0.0,
    "batch_size": 4,
    "max_epochs": 2,
    "curriculum_epochs": 1,
    "patience": 1,  # unused: a fine-tune runs its epochs; each member's held-out loss is in the history
}


def vlm_train_config(**overrides: Any) -> TrainConfig:
    """Return a TrainConfig with the VLM's loop defaults, and `overrides` on top."""
    return TrainConfig(**(VLM_TRAIN_DEFAULTS | overrides))


@dataclass(frozen=True)
class VLMConfig:
    """Which vision-language model, how it is adapted, and how its inputs are cut."""

    model_dir: str  # a local transformers model directory with its processor (REWARDLAB_VLM); never a hub name
    members: int = 2  # folds K: member k never trains on fold k (see `rewardlab.vlm`, "Honest scores")
    lora: bool = True  # train LoRA adapters and the head on frozen weights; False trains every weight
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Attention projections of the language model (and of a SigLIP vision tower, which names them alike).
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    dtype: Dtype = "auto"  # "auto": bfloat16 on CUDA, float32 elsewhere
    gradient_checkpointing: bool = True  # recompute activations in backward: memory for about a third more time
    text_only_epochs: int = 1  # epochs of the text-only twin, whose out-of-fold losses give SFC
    max_response_tokens: int = 512  # longer responses are cut to this many tokens (an image is never cut)
    bucket_window: int = 50  # batches per length-sorted window of the shuffled samples

    def __post_init__(self) -> None:
        if not self.model_dir:
            raise ValueError("model_dir must name a local vision-language model directory; got an empty string.")
        if self.members < 2:
            raise ValueError(f"members must be at least 2 (out-of-fold scoring needs folds), got {self.members}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}.")
        for name in ("lora_rank", "text_only_epochs", "max_response_tokens", "bucket_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")


@dataclass(frozen=True)
class VLMRunConfig:
    """Everything a VLM run was given, as stored in its artifact and in ModelRun.config."""

    vlm: VLMConfig
    train: TrainConfig = field(default_factory=vlm_train_config)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": BACKEND, "vlm": asdict(self.vlm), "train": asdict(self.train)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMRunConfig:
        """Rebuild from `to_dict()` output, ignoring keys a later version added."""
        known = {f.name for f in fields(VLMConfig)}
        values = {k: v for k, v in data["vlm"].items() if k in known}
        if "lora_targets" in values:
            values["lora_targets"] = tuple(values["lora_targets"])
        return cls(VLMConfig(**values), RunConfig.from_dict({"train": data["train"]}).train)

    def on_device(self, device: str) -> VLMRunConfig:
        """Return this config with another device (a model trained on a GPU scores on a CPU worker)."""
        return replace(self, train=replace(self.train, device=device))
