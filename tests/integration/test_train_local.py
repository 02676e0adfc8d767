"""The ranker trains on the real Feast training set without Ray, and its checkpoint reloads."""

from __future__ import annotations

import shutil
from pathlib import Path

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
    arrays, _ = load_groups(path, vocab, model.config.history_length)
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


def test_evaluation_replays_the_service_in_three_views_for_every_method(training_set, tmp_path):
    import html
    import json
    from datetime import UTC, datetime

    from seasonrec import schema as s
    from seasonrec.model.baselines import BASELINES
    from seasonrec.model.evaluate import evaluate
    from seasonrec.model.metrics import LIST_METRICS, METRICS
    from seasonrec.model.report import TITLE_WIDTH
    from seasonrec.summary import short_title

    settings, path = training_set
    settings = settings.model_copy(update={"paths": settings.paths.model_copy(update={"data_dir": path.parent})})
    train(settings, path, tmp_path / "ckpt", TrainOptions(epochs=2, batch_size=128))
    start, end = datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)
    themes = settings.paths.raw / s.THEMES_FILE
    metrics = evaluate(settings, tmp_path / "ckpt", start, end, tmp_path / "eval", themes=themes)
    methods = {"ranker", *BASELINES}
    assert set(metrics["baselines"]) == set(BASELINES) and set(metrics["ranker"]) == set(METRICS)
    views = metrics["views"]
    for split in ("all", "repeat", "explore", "new_items"):
        assert set(views["catalogue"][split]) == methods, split
        assert set(views["served"][split]) == methods, split
        assert set(views["served"][split]["ranker"]) == {*LIST_METRICS, "requests"}
    assert set(views["retrieval"]["all"]) == {*s.CANDIDATE_SOURCES, "union"}
    union = views["retrieval"]["all"]["union"]["recall"]
    # The union finds at least what each source finds, and a served list only holds candidates.
    assert all(union >= v["recall"] - 1e-9 for v in views["retrieval"]["all"].values())
    assert views["served"]["all"]["ranker"]["hr@10"] <= union + 1e-9
    # Repeat and explore split the requests' items: each split has fewer requests than all.
    n = views["catalogue"]["all"]["ranker"]["requests"]
    assert n == metrics["data"]["requests"] > 20
    assert 0 < views["catalogue"]["repeat"]["ranker"]["requests"] < n
    # Repeat purchase recommends only what the user bought before; global popularity mostly other things.
    shares = metrics["repeat_share@10"]["catalogue"]
    assert shares["repeat_purchase"] > shares["global_popularity"]
    assert metrics["ranker"]["auc"] > 0.6  # a random order of the catalogue has 0.5
    seasons = metrics["seasonality"]
    assert set(seasons) == {"north", "south"} and set(seasons["north"]) == {"01", "04", "07", "10", "12"}
    cell = seasons["south"]["07"]["seasonal_popularity"]
    assert cell["requests"] > 0 and 0 <= cell["in_season_share@10"] + cell["off_season_rate@10"] <= 1
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["views"] == json.loads(json.dumps(views))
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "Served view" in page and "Retrieval view" in page and "Seasonal correctness" in page
    assert (tmp_path / "eval" / "views.png").is_file() and (tmp_path / "eval" / "seasonality.png").is_file()
    # The report shows the ranker's July and December lists by name, with why each item is there.
    examples = metrics["examples"]
    assert {e["at"][5:7] for e in examples} == {"07", "12"} and {e["region"] for e in examples} >= {"GB", "AU"}
    first = examples[0]["items"][0]
    assert first[s.TITLE] and first[s.CATEGORY] and first["reasons"]
    assert html.escape(short_title(first[s.TITLE], TITLE_WIDTH)) in page and first[s.ITEM_ID] in page


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


def _features_copy(settings, folder, change) -> Path:
    """Copy the features into `folder` with the item profiles changed by `change`; return the profiles' file."""
    import polars as pl

    from seasonrec import schema as s

    shutil.copytree(settings.paths.features, folder / "features")
    profiles = folder / "features" / f"{s.ITEM_PROFILE}.parquet"
    change(pl.read_parquet(profiles)).write_parquet(profiles)
    return profiles


def test_fine_tuning_with_other_title_embeddings_is_refused(training_set, tmp_path, capsys, monkeypatch):
    import polars as pl

    from seasonrec import schema as s

    settings, path = training_set
    train(settings, path, tmp_path / "ckpt", TrainOptions(epochs=1, batch_size=128))
    profiles = _features_copy(
        settings, tmp_path / "data", lambda p: p.with_columns(pl.col(s.TITLE_EMBEDDING).list.head(8))
    )
    monkeypatch.setenv("SEASONREC__PATHS__DATA_DIR", str(tmp_path / "data"))
    err = _cli_error(capsys, "train", "--workers", "0", "--training-set", path, "--init-from", tmp_path / "ckpt")
    assert str(profiles) in err and s.TITLE_EMBEDDING in err
    assert f"has 8 dimensions but the checkpoint {tmp_path / 'ckpt'} takes {settings.features.embedding_dim}" in err


def test_fine_tuning_gives_items_launched_since_the_checkpoint_an_index_and_their_title(training_set, tmp_path):
    import polars as pl

    from seasonrec import schema as s

    settings, path = training_set
    train(settings, path, tmp_path / "season1", TrainOptions(epochs=1, batch_size=128))
    title = [0.5] * settings.features.embedding_dim

    def launch(profiles: pl.DataFrame) -> pl.DataFrame:
        new = profiles.head(1).with_columns(
            pl.lit("NEW-ITEM").alias(s.ITEM_ID),
            pl.Series(s.TITLE_EMBEDDING, [title], dtype=profiles.schema[s.TITLE_EMBEDDING]),
        )
        return pl.concat([profiles, new])

    _features_copy(settings, tmp_path / "data", launch)
    later = settings.model_copy(update={"paths": settings.paths.model_copy(update={"data_dir": tmp_path / "data"})})
    train(later, path, tmp_path / "season2", TrainOptions(epochs=1, batch_size=128), init_from=tmp_path / "season1")
    previous, old_vocab = load_model(tmp_path / "season1")
    tuned, vocab = load_model(tmp_path / "season2")
    # Known items keep their indices; the new one comes after them, with its own title in the model.
    assert vocab.items == (*old_vocab.items, "NEW-ITEM")
    assert tuned.config.n_items == previous.config.n_items + 1
    torch.testing.assert_close(tuned.item_titles[-1], torch.tensor(title))
    torch.testing.assert_close(tuned.item_titles[:-1], previous.item_titles)


def test_an_empty_training_window_is_a_clear_error(training_set, tmp_path, capsys, monkeypatch):
    settings, _ = training_set
    monkeypatch.setenv("SEASONREC__PATHS__DATA_DIR", str(settings.paths.root))
    monkeypatch.setenv("SEASONREC__FEAST__PROJECT", settings.feast.project)
    monkeypatch.setenv("SEASONREC__FEATURES__TITLE_ENCODER", "hashing")
    out = tmp_path / "empty.parquet"
    err = _cli_error(capsys, "features", "training-set", "--end", "2000-01-01T00:00:00", "--out", out)
    assert "empty training window" in err
    assert not out.exists()
