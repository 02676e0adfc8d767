"""Ray Train on a real local Ray: 2 CPU workers with DDP over gloo, and resume after a worker failure."""

from __future__ import annotations

import json

import pytest

from seasonrec.model.distributed import train_distributed
from seasonrec.model.train import HISTORY_FILE, TrainOptions, load_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_session():
    import ray

    # A cluster of its own, whatever `ray start` left in /tmp/ray/ray_current_cluster.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_workers_train_and_write_a_checkpoint(ray_session, training_set, tmp_path):
    settings, path = training_set
    summary = train_distributed(settings, path, tmp_path / "ckpt", TrainOptions(epochs=2, batch_size=64), workers=2)
    model, vocab = load_model(tmp_path / "ckpt")
    assert summary["workers"] == 2 and summary["epochs_run"] == 2
    assert len(vocab.items) + 2 == model.config.n_items
    epochs = json.loads((tmp_path / "ckpt" / HISTORY_FILE).read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1]


def test_a_failed_worker_resumes_from_the_last_checkpoint(ray_session, training_set, tmp_path):
    settings, path = training_set
    summary = train_distributed(
        settings, path, tmp_path / "ckpt", TrainOptions(epochs=3, batch_size=64), workers=2, fail_at_epoch=1
    )
    epochs = [e["epoch"] for e in json.loads((tmp_path / "ckpt" / HISTORY_FILE).read_text())["epochs"]]
    # The worker died after epoch 1; the restarted run began from that checkpoint, not from epoch 0
    # (no epoch was trained twice), and still finished every epoch.
    assert summary["epochs_repeated"] == 0
    assert epochs == [0, 1, 2] and summary["epochs_run"] == 3
