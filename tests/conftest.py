"""Shared fixtures: tiny seeded data and settings pointed at a temporary folder."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest

from seasonrec.config import FeastConfig, FeaturesConfig, GenerateConfig, PathsConfig, Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
ONLINE_RETAIL = SHARED / "data" / "online_retail_ii" / "online_retail_II_2009_2010.parquet"


def make_settings(
    root: Path, profile: str = "embedded", project: str = "seasonrec", encoder: str = "hashing"
) -> Settings:
    return Settings(
        paths=PathsConfig(data_dir=root),
        generate=GenerateConfig(users=600, items=80, start=date(2023, 1, 1), end=date(2024, 6, 30), seed=11),
        features=FeaturesConfig(title_encoder=encoder, embedding_dim=384, history_length=10, pool_size=20),
        feast=FeastConfig(profile=profile, project=project),
    )


@pytest.fixture(scope="session")
def online_retail_file() -> Path:
    """The real Online Retail II file from ../shared; skips when a clone has no ../shared."""
    if not ONLINE_RETAIL.is_file():
        pytest.skip(f"{ONLINE_RETAIL} is absent: ../shared holds the real dataset on the project's machines only")
    return ONLINE_RETAIL


@pytest.fixture(scope="session")
def settings_for():
    """`settings_for(root, profile=..., project=...)`: test settings rooted at a folder."""
    return make_settings


@pytest.fixture(scope="session")
def tiny_shop(tmp_path_factory) -> Settings:
    """Generated, ingested and feature-built once per session (no Feast yet)."""
    from seasonrec.data.generate import generate
    from seasonrec.data.ingest import ingest
    from seasonrec.features.build_features import build_features

    settings = make_settings(tmp_path_factory.mktemp("shop"))
    generate(settings.paths.raw, settings.generate)
    ingest("canonical", settings.paths.raw, settings.paths.canonical, settings.ingest)
    build_features(settings.paths.canonical, settings.paths.features, settings.features)
    return settings


@pytest.fixture
def stranger():
    """A process that is none of our servers' business, in a session of its own, as a reused pid would be."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()
