"""A tiny random Idefics3 (the architecture of SmolVLM) as a local model directory, built offline.

Tests and the CPU bench need a real vision-language architecture that loads through the same local-path
code as a production checkpoint (`rewardlab.vlm.model.vlm_net_build`), without downloading anything:
the config comes from its config class, the tokenizer is built with `tokenizers` over a small word list,
and the processor uses the PIL image processor (no torchvision). Idefics3 rather than Qwen2-VL because
Qwen2-VL's processor also loads a video processor, which needs torchvision.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from rewardlab.lexical import words
from rewardlab.synthetic import SyntheticConfig, generate_items

IMAGE_SIZE, PATCH_SIZE, SCALE_FACTOR = 56, 14, 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2  # 4 image tokens per image
SPECIAL_TOKENS = ("<pad>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>")
GLOBAL_IMAGE_TOKEN = "<global-img>"
PUNCTUATION = list(".,?!:;'\"()-")
# SmolVLM's turn layout, shortened: "User:<image>prompt<end_of_utterance>\nAssistant: response<end_of_utterance>\n"
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %} {{ part['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def synthetic_vocabulary(n_items: int = 60, seed: int = 99) -> list[str]:
    """Return the words of synthetic scenes (prompts, facts, responses) and of the chat template."""
    vocabulary = {"user", "assistant", "facts", "about", "the", "image", "answer", "caption"}
    for item, _ in generate_items(SyntheticConfig(n_items=n_items, seed=seed)):
        texts = [item["prompt"], *map(str, item["facts"].values()), *(r["text"] for r in item["responses"])]
        vocabulary.update(word for text in texts for word in words(text))
    return sorted(vocabulary)


def word_tokenizer(vocabulary: Iterable[str]):
    """Return a WordLevel tokenizer over `vocabulary` with the special tokens Idefics3's processor needs."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = [*SPECIAL_TOKENS, GLOBAL_IMAGE_TOKEN, *PUNCTUATION, *sorted(set(vocabulary))]
    model = models.WordLevel({token: index for index, token in enumerate(tokens)}, unk_token="<unk>")
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        additional_special_tokens=[*SPECIAL_TOKENS[4:], GLOBAL_IMAGE_TOKEN],
    )


def tiny_vlm_write(
    directory: str | Path, *, vocabulary: Iterable[str] | None = None, seed: int = 0, causal_lm: bool = False
) -> Path:
    """Write a seeded 2-layer Idefics3 (width 32, 56-pixel images) with its processor to `directory`.

    `causal_lm=True` writes it with its language-model head (`Idefics3ForConditionalGeneration`), as a
    checkpoint that generates is published: what TRL's DPOTrainer loads, reference model included.
    """
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Model
    from transformers.models.idefics3 import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    directory = Path(directory)
    tokenizer = word_tokenizer(synthetic_vocabulary() if vocabulary is None else vocabulary)
    side = {"longest_edge": IMAGE_SIZE}
    images = Idefics3ImageProcessorPil(size=side, max_image_size=side, do_image_splitting=False)
    processor = Idefics3Processor(images, tokenizer, image_seq_len=IMAGE_SEQ_LEN, chat_template=CHAT_TEMPLATE)
    pad = tokenizer.pad_token_id
    config = Idefics3Config(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "pad_token_id": pad,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=SCALE_FACTOR,
        pad_token_id=pad,
    )
    torch.manual_seed(seed)
    (Idefics3ForConditionalGeneration if causal_lm else Idefics3Model)(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
