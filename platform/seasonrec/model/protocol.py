"""Stage: the one-command evaluation protocol: ingest, build features, train, evaluate.

Training uses purchases before the test window (its last weeks for validation);
the test window is ranked against the full catalogue. The defaults are the
Online Retail II protocol: test on 2010-09-01 to 2010-12-09, the Christmas build-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.data.ingest import ingest
from seasonrec.errors import SeasonrecError
from seasonrec.features import store as feast_store
from seasonrec.features.build_features import build_features
from seasonrec.features.training_set import build_training_set
from seasonrec.model.evaluate import evaluate
from seasonrec.model.train import TrainOptions, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    dataset: str = "online-retail"
    test_start: date = date(2010, 9, 1)
    test_end: date = date(2010, 12, 9)  # inclusive
    val_weeks: int = 4
    seed: int = 0


def train_options(settings: Settings, seed: int | None = None, epochs: int | None = None) -> TrainOptions:
    cfg = settings.train
    return TrainOptions(
        epochs=epochs or cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        id_dropout=cfg.id_dropout,
        patience=cfg.patience,
        seed=cfg.seed if seed is None else seed,
        min_epoch_steps=cfg.min_epoch_steps,
    )


def fit_checkpoint(
    settings: Settings,
    training_set: Path,
    out: Path,
    options: TrainOptions,
    workers: int,
    gpu: bool = False,
    init_from: Path | None = None,
    val_weeks: int = 4,
) -> dict:
    """Train in-process (workers == 0) or with Ray Train on `workers` workers."""
    if workers == 0:
        return train(settings, training_set, out, options, init_from=init_from, val_weeks=val_weeks, gpu=gpu)
    from seasonrec.model.distributed import train_distributed

    return train_distributed(
        settings, training_set, out, options, workers=workers, gpu=gpu, init_from=init_from, val_weeks=val_weeks
    )


def train_from_settings(
    settings: Settings,
    training_set: Path | None = None,
    out: Path | None = None,
    workers: int | None = None,
    gpu: bool = False,
    init_from: Path | None = None,
    epochs: int | None = None,
    dp_epsilon: float | None = None,
) -> dict:
    """`seasonrec train` and `ray_jobs/train.py`: build the training set if none is given, then train.

    `dp_epsilon`: DP-SGD to that ε (single device only), with `train.dp_delta` and `train.dp_max_grad_norm`."""
    workers = settings.train.workers if workers is None else workers
    private = None
    # Checked before the training set is built, which can take minutes.
    if dp_epsilon is not None:
        from seasonrec.model.private import DPOptions

        if workers != 0:
            raise SeasonrecError(
                f"--dp-epsilon: needs --workers 0 (DP-SGD runs on one device for now; got {workers} Ray workers)"
            )
        private = DPOptions(dp_epsilon, settings.train.dp_delta, settings.train.dp_max_grad_norm)
    if training_set is None:
        training_set = settings.paths.root / "training_set.parquet"
        build_training_set(
            settings,
            training_set,
            negatives=settings.train.negatives,
            seed=settings.train.seed,
            limit=settings.train.max_groups or None,
            from_history=settings.train.history_negatives,
        )
    out = out or settings.paths.root / "checkpoints" / "ranker"
    options = train_options(settings, epochs=epochs)
    if private is not None:
        return train(
            settings, training_set, out, options, init_from, settings.train.val_weeks, gpu=gpu, private=private
        )
    return fit_checkpoint(settings, training_set, out, options, workers, gpu, init_from, settings.train.val_weeks)


def run_protocol(
    settings: Settings, protocol: Protocol, input_path: Path, out: Path, themes: Path | None = None
) -> dict:
    """Ingest `input_path`, build features, train, evaluate; item themes (a synthetic shop's) add seasonal checks."""
    out = Path(out)
    settings = settings.model_copy(update={"paths": settings.paths.model_copy(update={"data_dir": out / "data"})})
    start = datetime.combine(protocol.test_start, time(), tzinfo=UTC)
    end = datetime.combine(protocol.test_end, time(), tzinfo=UTC).replace(hour=23, minute=59, second=59)
    source = "online-retail" if protocol.dataset == "online-retail" else "canonical"
    ingest(source, input_path, settings.paths.canonical, settings.ingest, settings.privacy)
    build_features(settings.paths.canonical, settings.paths.features, settings.features, settings.privacy)
    feast_store.apply(settings)
    training_set = settings.paths.root / "training_set.parquet"
    build_training_set(
        settings,
        training_set,
        end=start,
        negatives=settings.train.negatives,
        seed=protocol.seed,
        limit=settings.train.max_groups or None,
        from_history=settings.train.history_negatives,
    )
    checkpoint = out / "checkpoint"
    fit_checkpoint(
        settings,
        training_set,
        checkpoint,
        train_options(settings, protocol.seed),
        settings.train.workers,
        val_weeks=protocol.val_weeks,
    )
    if themes is None and Path(input_path).is_dir() and (Path(input_path) / s.THEMES_FILE).is_file():
        themes = Path(input_path) / s.THEMES_FILE
    return evaluate(settings, checkpoint, start, end, out, themes=themes, val_weeks=protocol.val_weeks)
