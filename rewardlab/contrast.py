"""Image-contrast pairs: the same answer under its own image against the same answer under another image.

A labeled pair can be answered by style (the faithful answer is the longer one 85% of the time, say), and
a model that follows the style learns nothing about the image (issue 14). A pair whose two sides share the
answer text and differ only in the image cannot be answered by style: its text-only reward difference is
exactly zero, so it trains what looking at the image adds (r_image in `rewardlab.model`). mDPO builds
such pairs from a corrupted copy of the image; DT2IT-MRM reformulates text-to-image preference data the
same way. Here the chosen answer of each decisive label is the preferred side, under its own image, and
the same answer under another item's image is the rejected side.

Which other image: one whose item asks the same prompt where there is one (a hard negative: "two red
circles" under another scene asked how many red circles there are), else any other image. Such a pair is
sometimes wrong (the other scene may also have two red circles, and a negative claim, "no blue square",
is often true of other scenes too), which is why its weight is a setting (`TrainConfig.contrast_weight`).
Even so, many of them at a label's weight ground the model better than few at half of it: they are the
only samples style cannot answer (the measurements are at `TrainConfig.contrast_per_label`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rewardlab.features import Features
from rewardlab.labels import Samples


def _other_images(features: Features, pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return, per pair, the image row of a random other pair with the same prompt, else of any other pair."""
    images = features.image
    order = np.argsort(features.prompt, kind="stable")
    prompts = features.prompt[order]
    start = np.searchsorted(prompts, features.prompt[pairs], side="left")
    count = np.searchsorted(prompts, features.prompt[pairs], side="right") - start
    same_prompt = images[order[start + (rng.random(len(pairs)) * count).astype(np.int64)]]
    anywhere = images[rng.integers(0, len(images), len(pairs))]
    return np.where(same_prompt != images[pairs], same_prompt, anywhere)


def _same_prompt_answers(
    features: Features, pairs: np.ndarray, chosen: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Return, per labeled pair, the chosen answer of another labeled pair with the same prompt and another
    image (-1 where there is none or it reads the same)."""
    order = np.lexsort((features.image[pairs], features.prompt[pairs]))
    prompts = features.prompt[pairs][order]
    start = np.searchsorted(prompts, features.prompt[pairs], side="left")
    count = np.searchsorted(prompts, features.prompt[pairs], side="right") - start
    picked = order[start + (rng.random(len(pairs)) * count).astype(np.int64)]
    usable = (features.image[pairs[picked]] != features.image[pairs]) & (chosen[picked] != chosen)
    return np.where(usable, chosen[picked], -1)


def contrast_add(
    features: Features, samples: Samples, sample_fold: np.ndarray, *, per_label: int, weight: float, seed: int
) -> tuple[Features, Samples, np.ndarray]:
    """Return features with contrast pairs appended, the samples with theirs after the labels, and folds.

    Each decisive label gives up to `per_label` pairs of each kind, weighing `weight` times the label:
    - image contrast: side a, the chosen answer under its image; side b, the same answer under another;
    - answer swap: under the label's image, its chosen answer against the chosen answer of another item
      that asks the same prompt (a claim true of another scene, as an annotator would see it: same image,
      two answers, with styles drawn apart from the truth).
    A contrast pair keeps its label's fold, so the member held out of an item never sees its answers
    either. Ties and single-image datasets give none.
    """
    decisive = np.flatnonzero(samples.sign != 0)
    if per_label < 1 or weight <= 0 or not len(decisive) or len(np.unique(features.image)) < 2:
        return features, samples, sample_fold
    rng = np.random.default_rng(seed)
    source = np.repeat(decisive, per_label)
    pairs = samples.pair[source]
    a_wins = samples.sign[source] > 0
    chosen = np.where(a_wins, features.a[pairs], features.b[pairs])
    support = np.where(a_wins[:, None], features.support_a[pairs], features.support_b[pairs])
    other_image = _other_images(features, pairs, rng)
    other_answer = _same_prompt_answers(features, pairs, chosen, rng)
    images, swaps = other_image != features.image[pairs], other_answer >= 0
    no_support = np.zeros_like(support[swaps])
    rows = {
        "prompt": (features.prompt[pairs[images]], features.prompt[pairs[swaps]]),
        "a": (chosen[images], chosen[swaps]),
        "b": (chosen[images], other_answer[swaps]),
        "facts": (features.facts[pairs[images]], features.facts[pairs[swaps]]),
        "image": (features.image[pairs[images]], features.image[pairs[swaps]]),
        "image_b": (other_image[images], features.image[pairs[swaps]]),
        "support_a": (support[images], no_support),  # the facts say nothing of another item's answer
        "support_b": (support[images], no_support),
    }
    base = {name: getattr(features, name) for name in rows} | {"image_b": features.side_b_images}
    extended = replace(features, **{name: np.concatenate([base[name], *rows[name]]) for name in rows})
    source = np.concatenate([source[images], source[swaps]])
    first, added = len(features), len(source)
    joined = Samples(
        pair=np.concatenate([samples.pair, np.arange(first, first + added, dtype=np.int64)]),
        sign=np.concatenate([samples.sign, np.ones(added, np.float32)]),
        margin=np.concatenate([samples.margin, np.zeros(added, np.float32)]),
        weight=np.concatenate([samples.weight, (samples.weight[source] * weight).astype(np.float32)]),
    )
    return extended, joined, np.concatenate([sample_fold, sample_fold[source]])
