"""The reward heads: K ensemble members computed side by side, multimodal or text-only.

Every layer holds K members' weights in one tensor ([K, in, out]), so one batch trains the whole ensemble
in a few large matrix products instead of K small ones; on two CPU cores that is what keeps a retrain
under a minute. Member k never trains on fold k (`rewardlab.train`), so the ensemble also gives each
labeled pair an out-of-fold score.

r(image, prompt, response, facts), per member:
    u     = GELU(W_r e(response) + W_p e(prompt) + W_l [bag(response); bag(prompt)])     the claim
    attn  = heads of u attending over the image's tokens (objects, or a vision tower's patches):
            a soft count Σ σ(q·k), the largest match max σ(q·k) and a softmax-pooled value
    count = the number the response claims per head (W_n u); the gap (count − Σ σ)², alone and times
            the largest match, are features
    rel   = the relation the response claims per pair of heads (W_c u) times where the two heads'
            objects lie apart, W_d (pooled_i − pooled_j): "left of", "above", "next to"
    facts = GELU(W_f [fact support of the response; cos(e(response), e(facts))])       (Fact-RLHF)
    r     = r_text + r_image
    r_text  = w_t · GELU(W_t u)                                           what the words alone say
    r_image = g(attn, gap, rel, facts) − g(the same for a blank image, no facts)  what looking adds
    g       = w_i · GELU(W_i [·])
The text-only twin is r_text alone: the same text features, no image, no facts.

Why two terms: the image's own evidence, r_image(a) − r_image(b), is what tells a wrong label from a
correct one the style contradicts (issue 14). r_image reads the claim only against what it finds in the
image (the claimed counts and relations beside the found ones), never the claim vector as an input of
its own: with u among its inputs, it learned the style too (scene family, training variants:
counter-shortcut accuracy 0.23 against 0.35 without). Subtracting the blank image's value makes that
exact: r_image is 0 wherever the image and facts add nothing, whatever u says. A pair whose two sides
share the text and differ only in the image (`rewardlab.contrast`) moves r_image alone, since its r_text
difference is 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rewardlab.config import EncoderConfig, ModelConfig, RunConfig
from rewardlab.lexical import FACT_FEATURES

NEG_INF = -1e4  # attention logit of an absent token (finite, so an image with no tokens stays finite)


class EnsembleLinear(nn.Module):
    """K independent linear maps over inputs that carry the member axis first: [K, ..., in] → [K, ..., out]."""

    def __init__(self, members: int, d_in: int, d_out: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter((torch.rand(members, d_in, d_out, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter(torch.zeros(members, 1, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return torch.baddbmm(self.bias, flat, self.weight).reshape(*x.shape[:-1], -1)

    def shared(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every member to the same input [..., in] → [K, ..., out] (no copy of the input)."""
        flat = torch.einsum("ni,kio->kno", x.reshape(-1, x.shape[-1]), self.weight) + self.bias
        return flat.reshape(self.weight.shape[0], *x.shape[:-1], -1)


class EnsembleBag(nn.Module):
    """K learned embeddings of hashed words, averaged over a text's words: [B, W] ids → [K, B, dim].

    One `embedding_bag` call over the K tables seen as one [K * buckets, dim] table serves all members (its
    backward is a sparse scatter, not a dense gather); padding (id 0) gets weight 0. The weight keeps the
    member axis first, like every other parameter, so members can be saved and restored one at a time.
    """

    def __init__(self, members: int, buckets: int, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(members, buckets, dim, generator=generator) * 0.1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        members, buckets, dim = self.weight.shape
        offsets = torch.arange(members, device=ids.device)[:, None, None] * buckets
        present = (ids > 0).to(self.weight.dtype)
        member_ids = (ids[None] + offsets).reshape(-1, ids.shape[-1])
        weights = present.expand(members, *present.shape).reshape(member_ids.shape)
        sums = F.embedding_bag(member_ids, self.weight.view(-1, dim), mode="sum", per_sample_weights=weights)
        counts = present.sum(-1).clamp(min=1).reshape(1, -1, 1)
        return (sums.reshape(members, -1, dim) / counts).reshape(members, *ids.shape[:-1], dim)


class HeadsNet(nn.Module):
    """The heads backend's network: K reward heads over embeddings; `multimodal=False` makes the text-only twin."""

    def __init__(
        self,
        model: ModelConfig,
        encoders: EncoderConfig,
        *,
        text_dim: int,
        token_features: int,
        multimodal: bool,
        seed: int,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        k, w, heads = model.members, model.width, model.heads
        self.multimodal, self.heads = multimodal, heads

        def linear(d_in: int, d_out: int) -> EnsembleLinear:
            return EnsembleLinear(k, d_in, d_out, generator)

        self.bag = EnsembleBag(k, encoders.lexical_buckets, model.lexical_dim, generator)
        self.response = linear(text_dim, w)
        self.prompt = linear(text_dim, w)
        self.words = linear(2 * model.lexical_dim, w)
        if multimodal:
            self.token = linear(token_features, w)
            self.query, self.key, self.value = linear(w, w), linear(w, w), linear(w, w)
            self.claimed_count = linear(w, heads)
            pairs = heads * (heads - 1) // 2
            self.claimed_relation = linear(w, pairs)
            self.relation = linear(pairs * (w // heads), pairs)
            self.facts = linear(len(FACT_FEATURES) + 1, w)
            self.image_hidden = linear(w + 4 * heads + pairs + w, w)
            self.image_out = linear(w, 1)
        self.hidden = linear(w, w)
        self.out = linear(w, 1)

    def _claims(self, batch: dict[str, torch.Tensor], side: str, prompt: torch.Tensor, prompt_words: torch.Tensor):
        words = torch.cat([self.bag(batch[f"{side}_bow"]), prompt_words], dim=-1)
        return F.gelu(self.response.shared(batch[f"{side}_emb"]) + prompt + self.words(words))

    def _look(self, claims: torch.Tensor, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Attend from claims [K, S, B, w] (S = 2 responses) over image tokens [K, B, M, w]."""
        k, s, b, w = claims.shape
        d = w // self.heads
        query = self.query(claims).reshape(k, s, b, self.heads, d)
        key = self.key(tokens).reshape(k, b, -1, self.heads, d)
        value = self.value(tokens).reshape(k, b, -1, self.heads, d)
        logits = torch.einsum("ksbhd,kbmhd->ksbhm", query, key) / math.sqrt(d)
        mask = present[None, None, :, None, :]
        match = torch.sigmoid(logits) * mask
        attention = torch.softmax(logits.masked_fill(mask == 0, NEG_INF), dim=-1)
        seen = present.amax(-1)[None, None, :, None, None]  # an image with no tokens pools nothing
        pooled = torch.einsum("ksbhm,kbmhd->ksbhd", attention, value) * seen
        return self._found(claims, pooled, match.sum(-1), match.amax(-1))

    def _found(
        self, claims: torch.Tensor, pooled: torch.Tensor, count: torch.Tensor, best: torch.Tensor
    ) -> torch.Tensor:
        """What the claims' heads found: pooled values, counts against the claimed ones, best matches, and
        the claimed relations (left of, above ...) against where two heads' objects lie apart."""
        first, second = torch.triu_indices(self.heads, self.heads, offset=1)
        apart = (pooled[..., first, :] - pooled[..., second, :]).flatten(-2)
        relation = self.claimed_relation(claims) * self.relation(apart)
        gap = (count - self.claimed_count(claims)) ** 2
        return torch.cat([pooled.flatten(-2), count, gap, best, relation, gap * best], dim=-1)

    def _blank(self, claims: torch.Tensor) -> torch.Tensor:
        """What `_look` finds in an image with no tokens: nothing pooled, counted or matched."""
        k, s, b, w = claims.shape
        pooled = claims.new_zeros(k, s, b, self.heads, w // self.heads)
        nothing = claims.new_zeros(k, s, b, self.heads)
        return self._found(claims, pooled, nothing, nothing)

    def _facts(self, batch: dict[str, torch.Tensor], side: str) -> torch.Tensor:
        similarity = (batch[f"{side}_emb"] * batch["facts_emb"]).sum(-1, keepdim=True)
        return torch.cat([batch[f"support_{side}"], similarity], dim=-1)

    def _judge(self, looks: torch.Tensor, facts: torch.Tensor) -> torch.Tensor:
        """Turn what the heads found [K, S, B, ·] and the facts' support [S, B, ·] into a reward [K, S, B]."""
        joined = torch.cat([looks, F.gelu(self.facts.shared(facts))], dim=-1)
        return self.image_out(F.gelu(self.image_hidden(joined)))[..., 0]

    def _image_rewards(self, batch: dict[str, torch.Tensor], claims: torch.Tensor) -> torch.Tensor:
        """Return r_image [K, 2, B]: the reward of what the image and facts showed, less that of a blank.

        Subtracting the blank (no tokens, no facts) makes r_image 0 wherever the image adds nothing, whatever
        the claims say: a claim's words (its style among them) weigh only through what they found. Both
        sides look at the pair's image; where the batch names `rows_b` (contrast pairs), side b looks again
        at its own image `tokens_b`, and only those rows do: the image's projections cost more than the
        claims', so the label rows are not encoded twice."""
        tokens = batch["tokens"]
        looks = self._look(claims, F.gelu(self.token.shared(tokens)), tokens[..., 0])
        if "rows_b" in batch and len(batch["rows_b"]):
            rows, other = batch["rows_b"], batch["tokens_b"]
            seen = self._look(claims[:, 1:, rows], F.gelu(self.token.shared(other)), other[..., 0])
            looks = torch.stack([looks[:, 0], looks[:, 1].index_copy(1, rows, seen[:, 0])], dim=1)
        facts = torch.stack([self._facts(batch, side) for side in ("a", "b")])
        return self._judge(looks, facts) - self._judge(self._blank(claims), torch.zeros_like(facts))

    def parts(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return r_text and r_image (None for the twin), each [K, 2, B]: side a first, then side b."""
        prompt, prompt_words = self.prompt.shared(batch["prompt_emb"]), self.bag(batch["prompt_bow"])
        claims = torch.stack(
            [self._claims(batch, side, prompt, prompt_words) for side in ("a", "b")], dim=1
        )  # [K, 2, B, w]
        text = self.out(F.gelu(self.hidden(claims)))[..., 0]
        return text, self._image_rewards(batch, claims) if self.multimodal else None

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the rewards (r_a, r_b), each [K, B]."""
        text, image = self.parts(batch)
        rewards = text if image is None else text + image
        return rewards[:, 0], rewards[:, 1]


def heads_build(run: RunConfig, dims: dict[str, int], *, multimodal: bool) -> HeadsNet:
    """Build one ensemble of a run; the two ensembles get distinct initialisations fixed by the seed."""
    return HeadsNet(
        run.model,
        run.encoders,
        text_dim=dims["text_dim"],
        token_features=dims["token_features"],
        multimodal=multimodal,
        seed=run.train.seed * 10 + (1 if multimodal else 2),
    )
