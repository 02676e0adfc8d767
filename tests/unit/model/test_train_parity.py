"""N DDP workers take the single-device run's steps: same groups, same global batches, same early stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seasonrec.errors import SeasonrecError
from seasonrec.model import train as train_module
from seasonrec.model.ranker import SeasonalRanker, SeasonalRankerConfig
from seasonrec.model.train import TrainOptions, fit, shuffled_batches

CFG = SeasonalRankerConfig(
    n_items=30, n_categories=5, n_regions=4, title_dim=8, d_model=16, n_heads=2, n_layers=1, history_length=4,
    dropout=0.0,
)  # fmt: skip


def _groups(n: int, candidates: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` groups; `group` numbers them so a test can tell which groups a batch holds."""
    rng = np.random.default_rng(seed)
    return {
        "group": np.arange(n),
        "region": rng.integers(2, CFG.n_regions, n),
        "history_ids": rng.integers(2, CFG.n_items, (n, CFG.history_length)),
        "history_age_hours": rng.random((n, CFG.history_length), dtype=np.float32) * 100,
        "context": rng.standard_normal((n, CFG.context_dim), dtype=np.float32),
        "cand_ids": rng.integers(2, CFG.n_items, (n, candidates)),
        "cand_categories": rng.integers(2, CFG.n_categories, (n, candidates)),
        "cand_dense": rng.standard_normal((n, candidates, CFG.item_dense_dim), dtype=np.float32),
        "cand_personal": rng.standard_normal((n, candidates, CFG.personal_dim), dtype=np.float32),
    }


def _steps(arrays, batch_size: int, epoch: int, workers: int) -> list[list[np.ndarray]]:
    """Per step, each worker's group numbers."""
    per_worker = [
        [b["group"] for b in shuffled_batches(arrays, batch_size, seed=3, rank=r, workers=workers)(epoch)]
        for r in range(workers)
    ]
    assert len({len(steps) for steps in per_worker}) == 1, "workers must take the same number of steps"
    return [list(step) for step in zip(*per_worker, strict=True)]


@pytest.mark.parametrize(("n", "batch_size", "workers"), [(100, 10, 2), (103, 16, 4), (99, 32, 3), (50, 8, 1)])
def test_workers_together_take_the_single_device_batches(n, batch_size, workers):
    arrays = {"group": np.arange(n), "region": np.zeros(n)}
    for epoch in (0, 1):
        single = [b["group"] for b in shuffled_batches(arrays, batch_size, seed=3)(epoch)]
        distributed = _steps(arrays, batch_size, epoch, workers)
        assert len(distributed) == len(single)
        for one, shares in zip(single, distributed, strict=True):
            assert sorted(np.concatenate(shares)) == sorted(one)
        assert sorted(np.concatenate([g for step in distributed for g in step])) == list(range(n))


def test_each_worker_takes_its_share_of_the_global_batch():
    arrays = {"group": np.arange(256), "region": np.zeros(256)}
    steps = _steps(arrays, 64, epoch=0, workers=2)
    assert len(steps) == 4
    assert all(len(share) == 32 for step in steps for share in step)
    # Not divisible: shares differ by at most one group and still add up to the global batch.
    steps = _steps(arrays, 64, epoch=0, workers=3)
    assert all(sorted(len(share) for share in step) == [21, 21, 22] for step in steps)


def test_a_batch_smaller_than_the_worker_count_still_gives_every_worker_a_group():
    arrays = {"group": np.arange(10), "region": np.zeros(10)}
    steps = _steps(arrays, 2, epoch=0, workers=4)
    assert all(len(share) == 1 for step in steps for share in step)
    # 10 groups in steps of 4: the last 2 would leave two workers idle, so every worker skips them.
    assert len(steps) == 2


def test_every_epoch_is_a_fresh_full_shuffle_and_a_resumed_epoch_repeats_it():
    arrays = {"group": np.arange(1000), "region": np.zeros(1000)}
    first = _steps(arrays, 100, epoch=0, workers=2)[0][0]
    # A time-ordered input must not come out in near time order: the first batch spans the whole epoch.
    assert first.max() - first.min() > 800
    again = _steps(arrays, 100, epoch=0, workers=2)[0][0]
    later = _steps(arrays, 100, epoch=1, workers=2)[0][0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, later)


# Each DDP worker is its own interpreter: forking a process that already runs torch's thread pools can deadlock.
WORKER = """
import sys
from datetime import timedelta

import torch

from seasonrec.model.ranker import SeasonalRanker
from seasonrec.model.train import fit, shuffled_batches

rank, port, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
job = torch.load(f"{folder}/job.pt", weights_only=False)
torch.distributed.init_process_group(
    "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=timedelta(seconds=60)
)
model = SeasonalRanker(job["config"])
model.load_state_dict(job["state"])
options = job["options"]
batches = shuffled_batches(job["train"], options.batch_size, options.seed, rank=rank, workers=2)
ddp = torch.nn.parallel.DistributedDataParallel(model)
history = fit(ddp, batches, job["val"], options, torch.device("cpu"), lambda *_: None)
torch.save({"history": history, "state": model.state_dict()}, f"{folder}/rank{rank}.pt")
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ddp_workers_end_where_one_device_ends(tmp_path):
    import socket
    import subprocess
    import sys

    arrays, val = _groups(64), _groups(24, seed=1)
    del arrays["group"], val["group"]
    # patience=1 with lr this high stops early: both workers must stop at the single-device epoch. Not higher:
    # at 5e-2 the sums gloo adds in another order drifted 0.2% apart by the third epoch on an AMD EPYC.
    options = TrainOptions(epochs=4, batch_size=16, lr=2e-2, patience=1, id_dropout=0.0, seed=0)
    torch.manual_seed(0)
    state = SeasonalRanker(CFG).state_dict()
    single = SeasonalRanker(CFG)
    single.load_state_dict(state)
    expected = fit(single, shuffled_batches(arrays, 16, 0), val, options, torch.device("cpu"), lambda *_: None)

    torch.save({"config": CFG, "state": state, "options": options, "train": arrays, "val": val}, tmp_path / "job.pt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(port), str(tmp_path)]) for rank in (0, 1)]
    assert [w.wait(timeout=180) for w in workers] == [0, 0]

    # The scores' per-group offset is free (a softmax over the group ignores it), so Adam drifts it on noise alone.
    def scores(model):
        with torch.no_grad():
            out = model.eval()(**{k: torch.from_numpy(v) for k, v in val.items()})
        return out - out.mean(-1, keepdim=True)

    assert len(expected) < options.epochs, "the run should stop early"
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert [e["epoch"] for e in result["history"]] == [e["epoch"] for e in expected]
        for got, want in zip(result["history"], expected, strict=True):
            assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
            assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-4)
        trained = SeasonalRanker(CFG)
        trained.load_state_dict(result["state"])
        torch.testing.assert_close(scores(trained), scores(single), rtol=1e-3, atol=1e-3)


def test_gpu_without_cuda_fails_before_reading_anything(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SeasonrecError, match=r"^--gpu: no CUDA device is visible$"):
        train_module.train(None, tmp_path / "absent.parquet", tmp_path / "out", TrainOptions(), gpu=True)
    assert not (tmp_path / "out").exists()


def test_gpu_moves_the_loop_to_cuda_with_bf16_autocast(monkeypatch, tmp_path):
    arrays, val = _groups(12), _groups(6, seed=1)
    seen = {}

    def fake_prepare(settings, training_set, init_from, val_weeks):
        return SeasonalRanker(CFG), None, arrays, val, np.zeros(18)

    def fake_fit(model, batches, val_arrays, options, device, on_epoch, autocast=None, start_epoch=0, on_batch=None):
        seen.update(device=device, autocast=autocast)
        return []

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(train_module, "prepare", fake_prepare)
    monkeypatch.setattr(train_module, "fit", fake_fit)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
    (tmp_path / "out").mkdir()
    train_module.train(None, tmp_path / "set.parquet", tmp_path / "out", TrainOptions(), gpu=True)
    assert seen == {"device": torch.device("cuda"), "autocast": torch.bfloat16}
    train_module.train(None, tmp_path / "set.parquet", tmp_path / "out", TrainOptions())
    assert seen == {"device": torch.device("cpu"), "autocast": None}
