"""From a Dataset's pairs to the VLM's inputs: conversations, the batch layout, and batches by length.

A response is read in the conversation a chat model was tuned on: the user turn shows the image and the
prompt, with the item's facts appended as Fact-RLHF does (LLaVA-RLHF, Sun et al. 2023), and the assistant
turn holds the response. The text-only twin (SFC) reads the same turns without the image and without the
facts, which describe the image. Sequences are never truncated (cutting image tokens breaks the model);
only responses longer than `max_response_tokens` are shortened.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from rewardlab.data import Dataset, Item
from rewardlab.lexical import facts_text

FACTS_HEADER = "Facts about the image: "
LENGTH_CHUNK = 64  # items whose prompt turn is measured in one processor call


def conversation(item: Item, response: str | None, *, multimodal: bool) -> list[dict[str, Any]]:
    """Return the chat of one response (or, with `response` None, the user turn alone)."""
    facts = facts_text(item.facts) if multimodal else ""
    text = f"{item.prompt}\n\n{FACTS_HEADER}{facts}" if facts else item.prompt
    user = [{"type": "image"}] if multimodal else []
    turns = [{"role": "user", "content": [*user, {"type": "text", "text": text}]}]
    if response is not None:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return turns


class Collator:
    """Encode pairs of one Dataset for the model: one row per response, every `a` row first, then every `b`.

    >>> inputs = collator.encode(np.array([3, 7]), multimodal=True)
    >>> inputs["input_ids"].shape[0]  # rows: pair 3's a, pair 7's a, pair 3's b, pair 7's b
    4
    >>> reward_a, reward_b = torch.chunk(model(inputs), 2)  # each [2]

    Rows are padded to the batch's longest; the model reads each row's reward at its last real token.
    """

    def __init__(self, processor: Any, dataset: Dataset, *, max_response_tokens: int) -> None:
        self.processor, self.dataset = processor, dataset
        texts = [pair.a_text for pair in dataset.pairs] + [pair.b_text for pair in dataset.pairs]
        tokenizer = processor.tokenizer
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        self.responses = [
            text if len(tokens) <= max_response_tokens else tokenizer.decode(tokens[:max_response_tokens])
            for text, tokens in zip(texts, ids, strict=True)
        ]
        self.response_tokens = np.array([min(len(t), max_response_tokens) for t in ids], dtype=np.int64)  # [2P]
        self._lengths: dict[bool, np.ndarray] = {}  # per mode: measuring reads every image once

    def encode(self, pairs: np.ndarray, *, multimodal: bool) -> Any:
        """Return the processor's batch (input_ids, attention_mask, pixel values…) of 2·len(pairs) rows."""
        count = len(self.dataset.pairs)
        items = [self.dataset.pairs[p].item for p in pairs.tolist()]
        responses = [self.responses[p] for p in pairs.tolist()] + [self.responses[count + p] for p in pairs.tolist()]
        return self._encode(items + items, responses, multimodal=multimodal)

    def lengths(self, *, multimodal: bool) -> np.ndarray:
        """Return per pair the tokens of its longer row [P]: the prompt turn as processed, plus the response."""
        if multimodal not in self._lengths:
            self._lengths[multimodal] = self._measure(multimodal)
        return self._lengths[multimodal]

    def _measure(self, multimodal: bool) -> np.ndarray:
        items = np.arange(len(self.dataset.items))
        prompt = np.zeros(len(items), dtype=np.int64)
        for start in range(0, len(items), LENGTH_CHUNK):
            chunk = items[start : start + LENGTH_CHUNK].tolist()
            batch = self._encode(chunk, [None] * len(chunk), multimodal=multimodal)
            prompt[chunk] = batch["attention_mask"].sum(-1).numpy()
        item_of = np.array([pair.item for pair in self.dataset.pairs], dtype=np.int64)
        a, b = np.split(self.response_tokens, 2)
        return prompt[item_of] + np.maximum(a, b)

    def _encode(self, items: list[int], responses: list[str | None], *, multimodal: bool) -> Any:
        chats = [
            conversation(self.dataset.items[i], response, multimodal=multimodal)
            for i, response in zip(items, responses, strict=True)
        ]
        texts = [self.processor.apply_chat_template(chat, tokenize=False) for chat in chats]
        if not multimodal:
            return self.processor(text=texts, padding=True, return_tensors="pt")
        images = {i: self._image(self.dataset.items[i]) for i in set(items)}  # a pair's two rows share one
        return self.processor(text=texts, images=[[images[i]] for i in items], padding=True, return_tensors="pt")

    def _image(self, item: Item) -> Image.Image:
        return Image.open(io.BytesIO(self.dataset.read_image(item.image))).convert("RGB")


def length_batches(
    index: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    window: int = 50,
) -> list[np.ndarray]:
    """Cut `index` into batches of similar `lengths` (aligned with `index`), so padding wastes little.

    Training (`rng` given): shuffle, sort each window of `window` batches by length, cut it into batches,
    and shuffle the batches, so every epoch differs yet a batch pads only to its own longest (the
    megabatches of transformers' LengthGroupedSampler). Scoring (`rng` None): sort all by length.
    """
    order = np.arange(len(index)) if rng is None else rng.permutation(len(index))
    span = len(order) if rng is None else window * batch_size
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [index[chunk[i : i + batch_size]] for i in range(0, len(chunk), batch_size)]
    return batches if rng is None else [batches[i] for i in rng.permutation(len(batches))]


def prefetched(encode: Callable[[np.ndarray], Any], batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, Any]]:
    """Yield (batch, encode(batch)), encoding the next batch on a thread while the caller computes.

    Decoding images and running the processor is CPU work that would otherwise leave a GPU idle. A thread,
    not a DataLoader: Celery's prefork workers are daemonic and may not start processes of their own.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append((batch, pool.submit(encode, batch)))
            if len(pending) > 1:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
