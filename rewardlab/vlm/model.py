"""A vision-language backbone from a local directory with a scalar head: the reward r(image, prompt, response).

The backbone is the architecture's base model (`AutoModel`: no language-model head, whose logits over the
vocabulary would cost memory for nothing); the head reads the hidden state of each row's last real token,
the position where a causal model has read the whole response (as TRL's reward models and LLaVA-RLHF's do).
With LoRA (peft) only the adapters and the head train; otherwise every weight does. The members of the
ensemble are sets of trainable tensors swapped in and out of this one module (`trainable_state`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardlab.encoders import fingerprint
from rewardlab.vlm.config import VLMConfig

CUDA_DTYPE = torch.bfloat16  # what "auto" picks on a GPU: the range of float32 at half the memory


def model_dtype(config: VLMConfig, device: str) -> torch.dtype:
    if config.dtype == "auto":
        return CUDA_DTYPE if device.startswith("cuda") else torch.float32
    return getattr(torch, config.dtype)


def model_dir(config: VLMConfig) -> Path:
    """Return the local model directory, or say why it is not one (nothing is ever downloaded)."""
    path = Path(config.model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(f"VLM model_dir {config.model_dir!r} is not a local model directory (no config.json in it).")
    return path


def model_fingerprint(config: VLMConfig) -> str:
    """Identify the base model by its files, so an artifact never loads over other weights."""
    return fingerprint(model_dir(config))


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return each row's last real position [R], whichever side the processor padded on."""
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.bool()).argmax(-1)


class VLMNet(nn.Module):
    """The VLM backend's network: a backbone and a float32 linear head on each row's last real token."""

    def __init__(self, backbone: nn.Module, hidden_size: int, *, input_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1)
        self.input_dtype = input_dtype  # the backbone's weights' dtype, which pixel values must match

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Return the reward of every row [R] of a collated batch (`rewardlab.vlm.batches.Collator`)."""
        hidden = self.backbone(**inputs, use_cache=False).last_hidden_state  # [R, T, H]
        last = last_token_index(inputs["attention_mask"])
        return self.head(hidden[torch.arange(len(last), device=last.device), last].float())[:, 0]

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(name, param) for name, param in self.named_parameters() if param.requires_grad]


def trainable_state(model: VLMNet) -> dict[str, torch.Tensor]:
    """Return a CPU copy of the trainable tensors: one ensemble member (adapters and head, or every weight)."""
    return {name: param.detach().to("cpu", copy=True) for name, param in model.trainable()}


@torch.no_grad()
def trainable_load(model: VLMNet, state: Mapping[str, torch.Tensor]) -> None:
    """Put a member's tensors into the model; the names must match its trainable ones exactly."""
    params = dict(model.trainable())
    if set(params) != set(state):
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"member state does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}.")
    for name, param in params.items():
        param.copy_(state[name])


def vlm_net_build(config: VLMConfig, *, device: str, seed: int) -> tuple[VLMNet, Any]:
    """Load the backbone and processor from `config.model_dir`, add LoRA and the head; return both.

    The head and the adapters are drawn from `seed`, so a run and its reload build the same module.
    """
    from transformers import AutoModel, AutoProcessor

    path, dtype = model_dir(config), model_dtype(config, device)
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    backbone = AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype)
    if config.gradient_checkpointing:
        # Not reentrant: with frozen embeddings (LoRA) the reentrant variant would see no input needing grad.
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(seed)
    if config.lora:
        backbone = _with_lora(backbone, config)
    hidden_size = backbone.config.get_text_config().hidden_size
    return VLMNet(backbone, hidden_size, input_dtype=dtype).to(device), processor


def _with_lora(backbone: nn.Module, config: VLMConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
    )
    with warnings.catch_warnings():
        # peft 0.21 still reads transformers' v4 name for the checkpointing flag; the flag itself is right.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(backbone, lora)
