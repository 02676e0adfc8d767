"""SeasonalRanker: shapes, the once-per-request encoder, save/load, repeat-purchase signal."""

from __future__ import annotations

import torch

from seasonrec.model.ranker import PAD, SeasonalRanker, SeasonalRankerConfig

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
