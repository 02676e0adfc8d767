"""SeasonalRanker: shapes, the once-per-request encoder, save/load, titles from the catalogue, new items."""

from __future__ import annotations

import copy

import torch

from seasonrec.model.ranker import PAD, UNSEEN, SeasonalRanker, SeasonalRankerConfig

CFG = SeasonalRankerConfig(n_items=50, n_categories=6, n_regions=4, title_dim=16, d_model=32, history_length=5)


def _request(batch: int, candidates: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(2, 50, (batch, 5), generator=g)
    history[:, :2] = PAD  # left padding, as short histories are stored
    return {
        "history_ids": history,
        "history_age_hours": torch.rand(batch, 5, generator=g) * 100,
        "context": torch.randn(batch, CFG.context_dim, generator=g),
        "region": torch.randint(2, 4, (batch,), generator=g),
        "cand_ids": torch.randint(2, 50, (batch, candidates), generator=g),
        "cand_categories": torch.randint(2, 6, (batch, candidates), generator=g),
        "cand_titles": torch.randn(batch, candidates, 16, generator=g),
        "cand_dense": torch.randn(batch, candidates, CFG.item_dense_dim, generator=g),
        "cand_personal": torch.randn(batch, candidates, CFG.personal_dim, generator=g),
    }


def test_scores_one_value_per_candidate():
    model = SeasonalRanker(CFG).eval()
    assert model(**_request(3, 7)).shape == (3, 7)


def test_encoder_runs_once_per_request_whatever_the_candidate_count():
    model = SeasonalRanker(CFG).eval()
    seen = []
    model.encoder.register_forward_hook(lambda _m, inputs, _out: seen.append(tuple(inputs[0].shape)))
    with torch.no_grad():
        model(**_request(2, 10))
        model(**_request(2, 1000))
    assert seen == [(2, 6, 32), (2, 6, 32)]


def test_a_candidates_score_does_not_depend_on_the_other_candidates():
    model = SeasonalRanker(CFG).eval()
    request = _request(1, 8)
    with torch.no_grad():
        full = model(**request)
        alone = model(**{k: (v[:, :3] if k.startswith("cand_") else v) for k, v in request.items()})
    torch.testing.assert_close(full[:, :3], alone)


def test_save_and_load_give_the_same_scores(tmp_path):
    model = SeasonalRanker(CFG).eval()
    model.item_titles.normal_()
    model.save_pretrained(tmp_path)
    loaded = SeasonalRanker.from_pretrained(tmp_path).eval()
    request = _request(2, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(**request), loaded(**request))


def test_without_titles_the_catalogue_buffer_gives_them_by_id():
    model = SeasonalRanker(CFG).eval()
    model.item_titles.normal_()
    request = _request(2, 9)
    from_buffer = {k: v for k, v in request.items() if k != "cand_titles"}
    explicit = {**from_buffer, "cand_titles": model.item_titles[request["cand_ids"]]}
    with torch.no_grad():
        scores = model(**from_buffer)
        torch.testing.assert_close(scores, model(**explicit), rtol=0, atol=0)
        # The titles matter: the request's own random ones give other scores.
        assert not torch.allclose(scores, model(**request))


def test_added_items_score_as_unseen_items_did_and_known_ones_do_not_move(tmp_path):
    model = SeasonalRanker(copy.deepcopy(CFG)).eval()  # the model grows its own config
    n = CFG.n_items
    model.item_titles.normal_()
    request = _request(1, 6)
    titles = torch.randn(2, CFG.title_dim)
    unseen = {**request, "cand_ids": torch.tensor([[UNSEEN, UNSEEN]]), "cand_titles": titles[None]}
    unseen.update({k: request[k][:, :2] for k in ("cand_categories", "cand_dense", "cand_personal")})
    with torch.no_grad():
        before, before_unseen = model(**request), model(**unseen)
        model.add_items(titles, torch.tensor([3, 4]))
        after = model(**request)
        added = model(**{**unseen, "cand_ids": torch.tensor([[n, n + 1]]), "cand_titles": None})
    assert model.config.n_items == n + 2 == len(model.item_titles) == len(model.item_categories)
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(added, before_unseen)
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(SeasonalRanker.from_pretrained(tmp_path).eval()(**request), after)


def test_the_scorer_reads_the_candidate_its_attention_the_context_and_repeats_as_one_layer():
    """The blockwise first layer is the MLP over [cand, attended, ctx, cand * ctx, repeats, recency, personal]."""
    model = SeasonalRanker(CFG).eval()
    req = _request(2, 6, seed=3)
    req["cand_ids"][0, 0] = req["history_ids"][0, -1]  # one repeat, so the repeat columns are not all zero
    with torch.no_grad():
        encoded, pad, ctx = model.encode(req["history_ids"], req["history_age_hours"], req["context"], req["region"])
        cand = model.item_vectors(req["cand_ids"], req["cand_categories"], req["cand_titles"])
        cand = cand + model.item_dense(req["cand_dense"])
        q = model.query(cand)
        logits = torch.einsum("bcd,btd->bct", q, encoded) / q.shape[-1] ** 0.5
        attended = torch.einsum(
            "bct,btd->bcd", logits.masked_fill(pad.unsqueeze(1), float("-inf")).softmax(-1), encoded
        )
        same = req["history_ids"].unsqueeze(1) == req["cand_ids"].unsqueeze(2)
        repeats = torch.log1p(same.sum(-1, dtype=cand.dtype))
        ages = torch.where(same, req["history_age_hours"].unsqueeze(1), torch.full_like(same, 1e6, dtype=cand.dtype))
        recency = -torch.log1p(ages.min(-1).values) / 14.0
        ctx_c = ctx.unsqueeze(1).expand_as(cand)
        own = req["cand_personal"]
        features = torch.cat([cand, attended, ctx_c, cand * ctx_c, repeats[..., None], recency[..., None], own], -1)
        expected = model.scorer(features).squeeze(-1)
        torch.testing.assert_close(model(**req), expected, atol=1e-5, rtol=1e-5)


def test_candidates_shared_by_a_batch_score_as_if_each_request_had_its_own():
    model = SeasonalRanker(CFG).eval()
    req = _request(3, 8, seed=4)
    shared = {k: req[k][0] for k in ("cand_ids", "cand_categories", "cand_titles", "cand_dense")}
    per_request = {k: v.unsqueeze(0).expand(3, *v.shape) for k, v in shared.items()}
    with torch.no_grad():
        expected = model(**{**req, **per_request})
        encoded, pad, ctx = model.encode(req["history_ids"], req["history_age_hours"], req["context"], req["region"])
        vectors = model.item_vectors(shared["cand_ids"], shared["cand_categories"], shared["cand_titles"])
        cand, q = model.candidates(vectors, shared["cand_dense"])
        got = model.score_candidates(
            encoded,
            pad,
            ctx,
            req["history_ids"],
            req["history_age_hours"],
            shared["cand_ids"],
            cand,
            q,
            req["cand_personal"],
        )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
