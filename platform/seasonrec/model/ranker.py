"""`SeasonalRanker`: a transformers `PreTrainedModel` that scores candidates for one request.

The user's recent history plus one context token (season, holiday distance,
region, user totals) go through a Transformer encoder once per request. Each
candidate then attends over that encoding and an MLP scores it with the
context, so 1,000 candidates cost little more than 10: the encoder does not
run per candidate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

PAD, UNSEEN = 0, 1  # reserved item/category/region indices


class SeasonalRankerConfig(PretrainedConfig):
    model_type = "seasonal_ranker"

    def __init__(
        self,
        n_items: int = 2,
        n_categories: int = 2,
        n_regions: int = 2,
        title_dim: int = 384,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        history_length: int = 20,
        context_dim: int = 8,
        item_dense_dim: int = 6,
        personal_dim: int = 4,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_items = n_items
        self.n_categories = n_categories
        self.n_regions = n_regions
        self.title_dim = title_dim
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.history_length = history_length
        self.context_dim = context_dim
        self.item_dense_dim = item_dense_dim
        self.personal_dim = personal_dim
        self.dropout = dropout


class SeasonalRanker(PreTrainedModel):
    config_class = SeasonalRankerConfig
    base_model_prefix = "seasonal_ranker"

    def __init__(self, config: SeasonalRankerConfig):
        super().__init__(config)
        d = config.d_model
        self.item_id = nn.Embedding(config.n_items, d, padding_idx=PAD)
        self.category = nn.Embedding(config.n_categories, d, padding_idx=PAD)
        self.region = nn.Embedding(config.n_regions, d, padding_idx=PAD)
        self.title = nn.Linear(config.title_dim, d)
        self.item_dense = nn.Linear(config.item_dense_dim, d)
        self.age = nn.Linear(1, d)
        self.context = nn.Sequential(nn.Linear(config.context_dim, d), nn.GELU(), nn.Linear(d, d))
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, dim_feedforward=2 * d, dropout=config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.query = nn.Linear(d, d)
        self.scorer = nn.Sequential(nn.Linear(4 * d + 2 + config.personal_dim, 2 * d), nn.GELU(), nn.Linear(2 * d, 1))
        # What the model knows of every catalogue item, so history needs only ids.
        self.register_buffer("item_titles", torch.zeros(config.n_items, config.title_dim), persistent=True)
        self.register_buffer("item_categories", torch.zeros(config.n_items, dtype=torch.long), persistent=True)
        # How `score_candidates` applies the scorer's first layer: one block of its weights at a time (fast for
        # many candidates), or, when False, as one call of the layer on the concatenated features. Not part of
        # the config, since both are the same function of the same weights: DP training turns it off for its own
        # copy, because Opacus computes per-sample gradients from the inputs a layer is called with, and a
        # weight read in place is a layer it never sees called.
        self.fused_scorer = True
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.no_grad()
    def add_items(self, titles: torch.Tensor, categories: torch.Tensor) -> None:
        """Append catalogue items after the known ones, whose indices do not change.

        A new id starts as the never-seen id's vector: until fine-tuning moves it, the model scores a new item
        as it scored that item before it had an index (UNSEEN, with its title).
        """
        if len(titles) == 0:
            return
        known = self.item_id.weight
        grown = nn.Embedding(len(known) + len(titles), known.shape[1], padding_idx=PAD).to(known)
        grown.weight.copy_(torch.cat([known, known[UNSEEN].expand(len(titles), -1)]))
        self.item_id = grown
        self.item_titles = torch.cat([self.item_titles, titles.to(self.item_titles)])
        self.item_categories = torch.cat([self.item_categories, categories.to(self.item_categories)])
        self.config.n_items = len(grown.weight)

    def item_vectors(self, ids: torch.Tensor, categories: torch.Tensor, titles: torch.Tensor) -> torch.Tensor:
        return self.item_id(ids) + self.category(categories) + self.title(titles)

    def encode(
        self,
        history_ids: torch.Tensor,  # [B, H] item indices, PAD-padded on the left
        history_age_hours: torch.Tensor,  # [B, H]
        context: torch.Tensor,  # [B, context_dim]
        region: torch.Tensor,  # [B]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(encoded tokens [B, 1+H, d], key padding mask [B, 1+H], context vector [B, d]); once per request."""
        hist = self.item_vectors(history_ids, self.item_categories[history_ids], self.item_titles[history_ids])
        hist = hist + self.age(torch.log1p(history_age_hours.clamp(min=0)).unsqueeze(-1))
        ctx = self.context(context) + self.region(region)
        tokens = torch.cat([ctx.unsqueeze(1), hist], dim=1)
        pad = torch.cat([torch.zeros_like(history_ids[:, :1], dtype=torch.bool), history_ids == PAD], dim=1)
        return self.encoder(tokens, src_key_padding_mask=pad), pad, ctx

    def candidates(self, vectors: torch.Tensor, cand_dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidate vectors, attention queries), [..., C, d], from `item_vectors` and the dense features.

        None of it depends on the request: a caller that scores one catalogue for many requests (the
        evaluation) computes it once and hands it to `score_candidates` for each.
        """
        cand = vectors + self.item_dense(cand_dense)
        return cand, self.query(cand)

    def score_candidates(
        self,
        encoded: torch.Tensor,
        pad: torch.Tensor,
        ctx: torch.Tensor,
        history_ids: torch.Tensor,
        history_age_hours: torch.Tensor,
        cand_ids: torch.Tensor,
        cand: torch.Tensor,
        q: torch.Tensor,
        personal: torch.Tensor,
    ) -> torch.Tensor:
        """Scores [B, C] from `candidates`' tensors: [B, C, d] per request, or [C, d] shared by the batch.

        `personal` [B, C, personal_dim] is what the user's whole purchase history says of each candidate.
        """
        shared = cand.dim() == 2
        d = cand.shape[-1]
        logits = torch.einsum("cd,btd->bct" if shared else "bcd,btd->bct", q, encoded) / math.sqrt(d)
        weights = logits.masked_fill(pad.unsqueeze(1), float("-inf")).softmax(-1)
        # Has the user touched this very item, and how long ago? Known ids only: UNSEEN never matches.
        ids = (cand_ids.unsqueeze(0) if shared else cand_ids).unsqueeze(2)
        same = (history_ids.unsqueeze(1) == ids) & (ids > UNSEEN)
        repeats = torch.log1p(same.sum(-1, dtype=cand.dtype))
        ages = torch.where(same, history_age_hours.unsqueeze(1), torch.full_like(same, 1e6, dtype=cand.dtype))
        recency = -torch.log1p(ages.min(-1).values.clamp(min=0)) / 14.0
        if not self.fused_scorer:
            return self._score_unfused(encoded, ctx, cand, weights, repeats, recency, personal)
        # The scorer's first layer reads [cand, attended, ctx, cand * ctx, repeats, recency, personal], where
        # `attended` is the candidate's attention over the encoded history. It is applied one block of its
        # weights at a time, which is the same sum with far less work for many candidates: the attention block
        # is projected before the attention (weights @ (encoded @ w) = (weights @ encoded) @ w), the
        # candidate's two blocks are one product per request, and no [B, C, 4d + 2 + personal] features are
        # ever concatenated. Sums are taken in place: with tens of thousands of candidates a new [B, C, 2d]
        # tensor costs more to allocate than to add.
        first, w = self.scorer[0], self.scorer[0].weight
        hidden = weights @ (encoded @ w[:, d : 2 * d].T)
        per_request = w[:, :d].unsqueeze(0) + w[:, 3 * d : 4 * d].unsqueeze(0) * ctx.unsqueeze(1)  # [B, 2d, d]
        hidden.add_(torch.einsum("cd,bkd->bck" if shared else "bcd,bkd->bck", cand, per_request))
        hidden.add_((ctx @ w[:, 2 * d : 3 * d].T + first.bias).unsqueeze(1))
        own = torch.cat([torch.stack([repeats, recency], -1), personal], -1)
        hidden.add_(own @ w[:, 4 * d :].T)
        return self.scorer[2](self.scorer[1](hidden)).squeeze(-1)

    def _score_unfused(
        self,
        encoded: torch.Tensor,
        ctx: torch.Tensor,
        cand: torch.Tensor,
        weights: torch.Tensor,
        repeats: torch.Tensor,
        recency: torch.Tensor,
        personal: torch.Tensor,
    ) -> torch.Tensor:
        """`score_candidates`' scores with the scorer's first layer called on the concatenated features.

        Slower for many candidates, but every parameter is used through a layer's call (see `fused_scorer`).
        """
        if cand.dim() == 2:
            cand = cand.expand(weights.shape[0], -1, -1)
        ctx = ctx.unsqueeze(1).expand_as(cand)
        features = torch.cat(
            [cand, weights @ encoded, ctx, cand * ctx, torch.stack([repeats, recency], -1), personal], -1
        )
        return self.scorer(features).squeeze(-1)

    def forward(
        self,
        history_ids: torch.Tensor,
        history_age_hours: torch.Tensor,
        context: torch.Tensor,
        region: torch.Tensor,
        cand_ids: torch.Tensor,
        cand_categories: torch.Tensor,
        cand_dense: torch.Tensor,
        cand_personal: torch.Tensor,
        cand_titles: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores [B, C] for C candidates of each of B requests.

        Without `cand_titles` each candidate's title comes from the catalogue buffer by id, so training rows need
        not carry one. A never-seen item (id UNSEEN) has no title there: the caller passes titles explicitly.
        """
        if cand_titles is None:
            cand_titles = self.item_titles[cand_ids]
        encoded, pad, ctx = self.encode(history_ids, history_age_hours, context, region)
        cand, q = self.candidates(self.item_vectors(cand_ids, cand_categories, cand_titles), cand_dense)
        return self.score_candidates(
            encoded, pad, ctx, history_ids, history_age_hours, cand_ids, cand, q, cand_personal
        )
