"""An epoch of a small shop passes over its groups until it has taken `min_epoch_steps` steps."""

from __future__ import annotations

import numpy as np
import pytest

from seasonrec.config import Settings
from seasonrec.model.protocol import train_options
from seasonrec.model.train import shuffled_batches


def _arrays(n: int) -> dict[str, np.ndarray]:
    return {"group": np.arange(n), "region": np.zeros(n)}


def test_a_small_shop_passes_over_its_groups_again_within_one_epoch():
    batches = [b["group"] for b in shuffled_batches(_arrays(50), 16, seed=3, min_steps=10)(0)]
    assert len(batches) == 12  # 4 steps a pass, so 3 passes
    seen = np.concatenate(batches)
    assert np.array_equal(np.bincount(seen), np.full(50, 3)), "every group once a pass"
    passes = [np.concatenate(batches[i : i + 4]) for i in (0, 4, 8)]
    assert not np.array_equal(passes[0], passes[1]), "each pass is freshly shuffled"


@pytest.mark.parametrize("min_steps", [0, 1, 4])
def test_an_epoch_of_one_pass_or_more_is_the_epoch_it_always_was(min_steps):
    arrays = _arrays(50)
    for epoch in (0, 1):
        plain = [b["group"] for b in shuffled_batches(arrays, 16, seed=3)(epoch)]
        floored = [b["group"] for b in shuffled_batches(arrays, 16, seed=3, min_steps=min_steps)(epoch)]
        assert len(floored) == len(plain) == 4
        assert all(np.array_equal(a, b) for a, b in zip(plain, floored, strict=True))


def test_workers_take_the_single_device_steps_of_every_pass():
    arrays = _arrays(40)
    single = [b["group"] for b in shuffled_batches(arrays, 8, seed=1, min_steps=12)(2)]
    shares = [
        [b["group"] for b in shuffled_batches(arrays, 8, seed=1, rank=r, workers=2, min_steps=12)(2)] for r in (0, 1)
    ]
    assert len(single) == len(shares[0]) == len(shares[1]) == 15
    for one, a, b in zip(single, *shares, strict=True):
        assert sorted(np.concatenate([a, b])) == sorted(one)


def test_the_settings_floor_and_regularisation_reach_the_training_options():
    update = {"min_epoch_steps": 7, "weight_decay": 0.05, "id_dropout": 0.3}
    settings = Settings().model_copy(update={"train": Settings().train.model_copy(update=update)})
    options = train_options(settings)
    assert (options.min_epoch_steps, options.weight_decay, options.id_dropout) == (7, 0.05, 0.3)
