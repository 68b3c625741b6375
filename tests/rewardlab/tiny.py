"""Tiny random models of real architectures, written to local directories, for tests that need a model."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

from rewardlab.lexical import words
from rewardlab.synthetic import SyntheticConfig, generate_items

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tiny_bert(directory: Path, vocabulary: list[str]) -> Path:
    """Write a seeded 1-layer random BERT and its WordPiece tokenizer over `vocabulary` to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + vocabulary) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer.vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_tiny_bert(directory: Path) -> Path:
    """A tiny BERT over the words of synthetic items; seeded, so every module writes the same files."""
    vocabulary = set()
    for item, _ in generate_items(SyntheticConfig(n_items=60, seed=99)):
        texts = [item["prompt"], *item["facts"].values(), *(r["text"] for r in item["responses"])]
        vocabulary.update(word for text in texts for word in words(text))
    return save_tiny_bert(directory, list(".,?!:;") + sorted(vocabulary))


# A chat template for text messages, as instruct models ship one: each turn on its own, role first.
TEXT_CHAT_TEMPLATE = "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }}\n{% endfor %}"


def write_tiny_reward_model(directory: Path) -> Path:
    """Write a seeded 2-layer random Llama with a scalar head and its tokenizer, what TRL's RewardTrainer trains.

    The tokenizer is the tiny VLM's word-level one (`rewardlab.vlm.tiny.word_tokenizer`), so text-only and
    vision reward tests read the same words the same way.
    """
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rewardlab.vlm.tiny import synthetic_vocabulary, word_tokenizer

    tokenizer = word_tokenizer(synthetic_vocabulary())
    # RewardTrainer renders conversational rows (RewardLab's `reward` format) through the model's chat template.
    tokenizer.chat_template = TEXT_CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
