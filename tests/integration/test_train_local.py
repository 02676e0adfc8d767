"""The ranker trains on the real Feast training set without Ray, and its checkpoint reloads."""

from __future__ import annotations

import pytest
import torch

from seasonrec.errors import SeasonrecError
from seasonrec.model.data import load_groups
from seasonrec.model.train import TrainOptions, evaluate_groups, load_model, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_training_beats_the_untrained_model_and_reloads(training_set, tmp_path):
    settings, path = training_set
    summary = train(settings, path, tmp_path / "ckpt", TrainOptions(epochs=3, batch_size=128))
    model, vocab = load_model(tmp_path / "ckpt")
    arrays, _ = load_groups(path, vocab, model.config.history_length, model.config.title_dim)
    trained = evaluate_groups(model, arrays, torch.device("cpu"))
    untrained = evaluate_groups(type(model)(model.config), arrays, torch.device("cpu"))
    assert trained["val_loss"] < untrained["val_loss"] - 0.05
    assert trained["val_top1"] > 1.5 / 8  # random would put the purchase first 1 time in 8
    assert summary["epochs_run"] >= 1


def test_fine_tuning_starts_from_the_loaded_weights(training_set, tmp_path):
    settings, path = training_set
    train(settings, path, tmp_path / "season1", TrainOptions(epochs=2, batch_size=128))
    previous, _ = load_model(tmp_path / "season1")
    train(
        settings,
        path,
        tmp_path / "season2",
        TrainOptions(epochs=1, batch_size=128, lr=1e-6),
        init_from=tmp_path / "season1",
    )
    tuned, _ = load_model(tmp_path / "season2")
    # A tiny learning rate barely moves the weights: they started from season 1, not from random.
    for name, weight in previous.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[name], weight, atol=1e-3, rtol=0)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SeasonrecError, match="not a seasonrec checkpoint"):
        load_model(tmp_path / "nowhere")


def test_evaluation_writes_metrics_for_the_ranker_and_every_baseline(training_set, tmp_path):
    import json
    from datetime import UTC, datetime

    from seasonrec.model.baselines import BASELINES
    from seasonrec.model.evaluate import evaluate
    from seasonrec.model.metrics import METRICS

    settings, path = training_set
    settings = settings.model_copy(update={"paths": settings.paths.model_copy(update={"data_dir": path.parent})})
    train(settings, path, tmp_path / "ckpt", TrainOptions(epochs=2, batch_size=128))
    start, end = datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)
    metrics = evaluate(settings, tmp_path / "ckpt", start, end, tmp_path / "eval")
    assert set(metrics["baselines"]) == set(BASELINES)
    assert set(metrics["ranker"]) == set(METRICS)
    assert metrics["data"]["requests"] > 20
    # Items launched inside the window are scored on their own, against every baseline too.
    cold = metrics["slices"]["new_items"]
    assert cold["requests"] > 0 and set(METRICS) == set(cold["ranker"]) == set(cold["global_popularity"])
    # Better than a random order of the catalogue, which has an AUC of 0.5.
    assert metrics["ranker"]["auc"] > 0.6
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["ranker"] == metrics["ranker"]
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "eval" / "metrics_per_week.png").is_file()


def _cli_error(capsys, *argv) -> str:
    from seasonrec.cli import main

    capsys.readouterr()  # only this command's output counts
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_checkpoint_of_another_architecture_is_refused(training_set, tmp_path, capsys):
    import json

    settings, path = training_set
    train(settings, path, tmp_path / "ckpt", TrainOptions(epochs=1, batch_size=128))
    config = tmp_path / "ckpt" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "bert"}))
    err = _cli_error(capsys, "train", "--workers", "0", "--training-set", path, "--init-from", tmp_path / "ckpt")
    assert "config.json" in err and "'bert'" in err and "incompatible model" in err


def test_a_training_set_with_other_title_embeddings_is_refused(training_set, tmp_path, capsys):
    import polars as pl

    from seasonrec import schema as s

    settings, path = training_set
    train(settings, path, tmp_path / "ckpt", TrainOptions(epochs=1, batch_size=128))
    other = tmp_path / "other.parquet"
    rows = pl.read_parquet(path)
    rows.with_columns(pl.col(s.TITLE_EMBEDDING).list.head(8)).write_parquet(other)
    err = _cli_error(capsys, "train", "--workers", "0", "--training-set", other, "--init-from", tmp_path / "ckpt")
    assert s.TITLE_EMBEDDING in err and "8 dimensions" in err


def test_an_empty_training_window_is_a_clear_error(training_set, tmp_path, capsys, monkeypatch):
    settings, _ = training_set
    monkeypatch.setenv("SEASONREC__PATHS__DATA_DIR", str(settings.paths.root))
    monkeypatch.setenv("SEASONREC__FEAST__PROJECT", settings.feast.project)
    monkeypatch.setenv("SEASONREC__FEATURES__TITLE_ENCODER", "hashing")
    out = tmp_path / "empty.parquet"
    err = _cli_error(capsys, "features", "training-set", "--end", "2000-01-01T00:00:00", "--out", out)
    assert "empty training window" in err
    assert not out.exists()
