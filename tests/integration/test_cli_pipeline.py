"""The console script end to end, as `make demo` runs it, on a small config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEASONREC = str(Path(sys.executable).parent / "seasonrec")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = root / "small.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "paths": {"data_dir": str(root / "data")},
                "generate": {"users": 300, "items": 60, "start": "2023-06-01", "end": "2024-05-31", "seed": 5},
                "features": {"title_encoder": "hashing"},
                "feast": {"project": "cli_test"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEASONREC")}

    def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        command = [SEASONREC, "--config", str(config), "--json", *args]
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        if ok:
            assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    yield _run, root
    shutil.rmtree(root, ignore_errors=True)


def test_pipeline_prints_online_features_for_sample_users(run):
    cli, root = run
    generated = json.loads(cli("data", "generate").stdout)
    summary = json.loads(cli("data", "ingest", "--source", "canonical", "--input", str(root / "data" / "raw")).stdout)
    assert summary["rows_in"] == generated["events"] == summary["rows_accepted"]
    manifest = json.loads(cli("features", "build").stdout)
    assert manifest["title_encoder"] == "hashing"
    applied = json.loads(cli("features", "apply").stdout)
    assert "ranker_v1" in applied["feature_services"]
    cli("features", "materialize")
    users = json.loads(cli("features", "online", "--sample", "2", "--items-from-pool", "3").stdout)
    assert len(users) == 2
    for result in users:
        assert result["user"]["n_purchases"] > 0
        assert len(result["items"]) == 3
        assert all(item["title_embedding_dim"] == 384 for item in result["items"])


def test_bad_input_is_one_line_naming_the_file(run):
    cli, root = run
    empty = root / "empty.csv"
    empty.write_text("")
    proc = cli("data", "ingest", "--source", "online-retail", "--input", str(empty), ok=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("error:") and str(empty) in proc.stderr
    assert "Traceback" not in proc.stderr
