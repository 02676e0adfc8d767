"""Export to ONNX into a model repository, then the real embedded Triton: scores, hot swap, failures."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from seasonrec.errors import SeasonrecError
from seasonrec.export.export import TOLERANCE, export_model, parity_batches
from seasonrec.export.repository import CARD_FILE
from seasonrec.model.train import TrainOptions, load_model, train
from seasonrec.processes import session_members
from seasonrec.triton.client import RankerClient, ScorerUnavailable
from seasonrec.triton.server import TritonServer, free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def with_triton(settings, root, **triton):
    ports = free_ports()
    return settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"data_dir": root}),
            "triton": settings.triton.model_copy(
                update={"repository": root / "repository", "timeout_ms": 5_000, **ports, **triton}
            ),
        }
    )


@pytest.fixture(scope="module")
def checkpoints(training_set, tmp_path_factory):
    """Two seasons of the ranker: the second fine-tuned from the first, so their scores differ."""
    settings, path = training_set
    root = tmp_path_factory.mktemp("ckpt")
    train(settings, path, root / "v1", TrainOptions(epochs=1, batch_size=128))
    train(settings, path, root / "v2", TrainOptions(epochs=1, batch_size=128, lr=1e-2, seed=1), init_from=root / "v1")
    return root / "v1", root / "v2"


@pytest.fixture(scope="module")
def exported(training_set, checkpoints, tmp_path_factory):
    settings, path = training_set
    settings = with_triton(settings, tmp_path_factory.mktemp("triton"))
    first = export_model(settings, checkpoints[0], training_set=path)
    return settings, path, first


def _request(path, checkpoint):
    """One real request with 200 candidates, every 7th a new launch the version has never seen."""
    model, vocab = load_model(checkpoint)
    return model, parity_batches(path, model, vocab)[1]


def test_export_writes_a_checked_version_with_its_model_card(exported, checkpoints):
    settings, _, first = exported
    version = settings.triton.repository / "ranker" / "1"
    assert first["version"] == 1 and first["max_abs_diff"] <= TOLERANCE
    assert {"model.onnx", "model.py", CARD_FILE, "build_plan.sh"} <= {p.name for p in version.iterdir()}
    card = json.loads((version / CARD_FILE).read_text())
    assert card["source_checkpoint"] == str(checkpoints[0].resolve()) and len(card["checkpoint_sha256"]) == 64
    assert card["data_window"]["first_request"] < card["data_window"]["last_request"]
    assert card["parity"]["max_abs_diff"] <= TOLERANCE
    # The repository got the committed configs beside the version.
    assert (settings.triton.repository / "ranker" / "config.pbtxt").is_file()


def test_an_existing_or_older_version_is_refused_and_nothing_is_left_behind(exported, checkpoints):
    settings, path, _ = exported
    with pytest.raises(SeasonrecError, match="version 1 exists; versions only go up"):
        export_model(settings, checkpoints[1], training_set=path, version=1)
    assert not list((settings.triton.repository / "ranker").glob(".staging-*"))


def test_a_corrupt_checkpoint_is_a_clear_error(exported, checkpoints, tmp_path):
    import shutil

    settings, path, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints[0], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(SeasonrecError, match="cannot load the ranker"):
        export_model(settings, broken, training_set=path)
    assert [p.name for p in (settings.triton.repository / "ranker").iterdir() if p.name[0].isdigit()] == ["1"]


def test_a_failed_parity_check_publishes_nothing(exported, checkpoints, monkeypatch):
    from seasonrec.export import export

    settings, path, _ = exported
    # Stand-in for an exporter bug: ONNX Runtime's scores drift from PyTorch's.
    monkeypatch.setattr(export, "check_parity", lambda *a: 3e-3)
    with pytest.raises(SeasonrecError, match="parity check failed.*nothing was written"):
        export_model(settings, checkpoints[1], training_set=path)
    names = {p.name for p in (settings.triton.repository / "ranker").iterdir()}
    assert "2" not in names and not any(n.startswith(".staging") for n in names)


async def _score(settings, batch, version=""):
    client = RankerClient(settings.triton)
    try:
        return await client.score(batch, version)
    finally:
        await client.close()


def test_triton_scores_equal_pytorch_then_swaps_versions_under_load(exported, checkpoints):
    settings, path, _ = exported
    server = TritonServer(settings)
    server.start()
    try:
        model, request = _request(path, checkpoints[0])
        import torch

        with torch.inference_mode():
            expected = model(**{k: torch.from_numpy(v) for k, v in request.reference.items()}).numpy()
        batch = request.served
        assert (batch["cand_ids"] >= model.config.n_items).sum() == 29 and "cand_titles" not in batch
        scores, version = asyncio.run(_score(settings, batch))
        assert version == "1" and scores.shape == (1, 200)
        # Both kinds of item score as PyTorch scores them: by index, and new launches by their title.
        np.testing.assert_allclose(scores, expected, atol=TOLERANCE, rtol=0)

        second = export_model(settings, checkpoints[1], training_set=path, build_tensorrt=True)
        card = json.loads((Path(second["path"]) / CARD_FILE).read_text())
        assert card["tensorrt"]["built"] is False and card["tensorrt"]["reason"]
        answered, errors = asyncio.run(_swap_under_load(settings, server, batch))
        assert errors == [], errors[:3]
        assert {"1", "2"} <= set(answered) and answered[-1] == "2"
        assert server.live_versions() == [2]
    finally:
        server.stop()


async def _swap_under_load(settings, server, batch):
    """Four clients score without pause while version 2 is loaded and version 1 unloaded."""
    answered, errors, done = [], [], asyncio.Event()

    async def client_loop():
        client = RankerClient(settings.triton)
        while not done.is_set():
            try:
                answered.append((await client.score(batch))[1])
            except Exception as exc:  # every failure counts, whatever its type
                errors.append(repr(exc))
        await client.close()

    tasks = [asyncio.create_task(client_loop()) for _ in range(4)]
    await asyncio.sleep(1.0)
    await asyncio.to_thread(server.swap)
    await asyncio.sleep(1.0)
    done.set()
    await asyncio.gather(*tasks)
    return answered, errors


def test_a_model_that_fails_to_load_is_a_clear_error_and_the_live_one_stays(exported, checkpoints):
    settings, path, _ = exported
    server = TritonServer(settings)
    server.start()
    try:
        live = server.live_versions()
        bad = settings.triton.repository / "ranker" / "9"
        bad.mkdir()
        (bad / "model.onnx").write_bytes(b"not an onnx graph")
        (bad / "model.py").write_bytes((settings.triton.repository / "ranker" / "model.py").read_bytes())
        with pytest.raises(SeasonrecError, match="could not load"):
            server.swap(9)
        assert server.live_versions() == live
    finally:
        server.stop()
        import shutil

        shutil.rmtree(settings.triton.repository / "ranker" / "9", ignore_errors=True)


def test_stop_leaves_no_process_and_a_stopped_server_is_unavailable(exported, checkpoints):
    settings, path, _ = exported
    server = TritonServer(settings)
    pid = server.start()["pid"]
    assert server.status()["ready"] is True
    assert server.stop() is True
    assert session_members(pid) == []  # no orphan: neither the server nor a Python-backend stub
    assert server.status() == {"running": False}
    _, request = _request(path, checkpoints[0])
    with pytest.raises(ScorerUnavailable):
        asyncio.run(_score(settings, request.served))


def test_missing_binary_and_busy_port_are_clear_errors(exported):
    settings, _, _ = exported
    with pytest.raises(SeasonrecError, match="tritonserver binary not found"):
        TritonServer(with_triton(settings, settings.paths.root, binary="/nonexistent/tritonserver")).start()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = with_triton(settings, settings.paths.root, http_port=busy.getsockname()[1])
        with pytest.raises(SeasonrecError, match=r"port \d+ \(triton.http_port\) is in use"):
            TritonServer(taken).start()
