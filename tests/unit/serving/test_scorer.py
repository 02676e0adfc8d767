"""The scorer across a hot swap: a request for a version Triton has just unloaded is retried once on the new one."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from seasonrec import schema as s
from seasonrec.model.batch import CONTEXT_COLUMNS, ITEM_DENSE_COLUMNS, Vocab
from seasonrec.serving.contracts import Fetched
from seasonrec.serving.scorer import Scorer
from seasonrec.triton.client import ScorerUnavailable


class _Triton:
    """Serves `live`; a request naming any other version is refused as Triton refuses an unloaded one."""

    def __init__(self, live: list[int]):
        self.live, self.asked = live, []

    async def ready_versions(self) -> list[int]:
        return self.live

    async def score(self, batch, version: str):
        self.asked.append(version)
        if int(version) not in self.live:
            raise ScorerUnavailable(f"model 'ranker' version {version} is not ready")
        return np.zeros((1, batch["cand_ids"].shape[1]), dtype=np.float32), version


def _scorer(tmp_path, triton) -> Scorer:
    for version in (1, 2):
        folder = tmp_path / str(version)
        folder.mkdir()
        Vocab(("A", "B"), ("toys",), ("GB",)).save(folder / "vocab.json")
        (folder / "config.json").write_text(json.dumps({"history_length": 4, "title_dim": 3}))
    scorer = object.__new__(Scorer)
    scorer.folder, scorer.client, scorer.shapes, scorer.live, scorer._checked = tmp_path, triton, {}, None, 0.0
    return scorer


def _fetched() -> Fetched:
    user = {s.REQUEST_TS: 1_733_000_000, s.REGION: "GB", **dict.fromkeys(CONTEXT_COLUMNS, 0.0)}
    items = {s.ITEM_ID: ["A", "B"], s.CATEGORY: ["toys", "toys"], **{c: [1.0, 1.0] for c in ITEM_DENSE_COLUMNS}}
    return Fetched(user=user, items=items, region="GB")


def test_a_request_for_a_version_swapped_out_is_retried_once_on_the_new_one(tmp_path):
    triton = _Triton([1])
    scorer = _scorer(tmp_path, triton)
    assert asyncio.run(scorer.score(_fetched()))[1] == "1"
    triton.live = [2]  # swapped within the replica's version check: it still asks for 1
    scores, version = asyncio.run(scorer.score(_fetched()))
    assert version == "2" and len(scores) == 2
    assert triton.asked == ["1", "1", "2"]


def test_a_version_still_live_but_refused_is_an_error_not_a_loop(tmp_path):
    triton = _Triton([1])
    scorer = _scorer(tmp_path, triton)

    async def refused(batch, version):
        triton.asked.append(version)
        raise ScorerUnavailable("Triton at x: deadline exceeded")

    triton.score = refused
    with pytest.raises(ScorerUnavailable):
        asyncio.run(scorer.score(_fetched()))
    assert triton.asked == ["1"]


def test_concurrent_requests_caught_by_a_swap_each_retry_on_the_new_version(tmp_path):
    """The replica's live version is shared: one request's refresh must not make another give up."""
    triton = _Triton([1])
    scorer = _scorer(tmp_path, triton)
    asyncio.run(scorer.score(_fetched()))
    triton.live = [2]
    score, versions = triton.score, triton.ready_versions

    async def slow_score(batch, version):
        await asyncio.sleep(0.01)  # in flight together, as on Triton
        return await score(batch, version)

    async def slow_versions():
        await asyncio.sleep(0.01)
        return await versions()

    triton.score, triton.ready_versions = slow_score, slow_versions

    async def both():
        return await asyncio.gather(scorer.score(_fetched()), scorer.score(_fetched()))

    assert [version for _, version in asyncio.run(both())] == ["2", "2"]
