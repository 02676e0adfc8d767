"""Stage: the seasonal refresh: features, online store, training set, training, export.

It starts from the canonical tables already ingested into `<data_dir>/canonical`
and ends with a new version in the Triton model repository; the running Triton
picks it up with `seasonrec triton swap`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from seasonrec.config import Settings

log = logging.getLogger(__name__)


def refresh(
    settings: Settings,
    workers: int | None = None,
    gpu: bool = False,
    init_from: Path | None = None,
    epochs: int | None = None,
) -> dict:
    from seasonrec.export.export import export_model
    from seasonrec.features import store
    from seasonrec.features.build_features import build_features
    from seasonrec.model.protocol import train_from_settings

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    build_features(settings.paths.canonical, settings.paths.features, settings.features, settings.privacy)
    store.apply(settings)
    store.materialize(settings)
    checkpoint = settings.paths.root / "checkpoints" / f"ranker-{stamp}"
    # The training set is rebuilt from the features just written (train_from_settings does it).
    trained = train_from_settings(settings, None, checkpoint, workers, gpu, init_from, epochs)
    exported = export_model(settings, checkpoint)
    log.info("refresh done: checkpoint %s, model version %s", checkpoint, exported["version"])
    return {"checkpoint": str(checkpoint), "train": trained, "export": exported}
