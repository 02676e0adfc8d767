"""`seasonrec bench chaos`, short: Triton killed, Redis restarted, bad rules, a model swap, all under load."""

from __future__ import annotations

import pytest

from seasonrec.bench.chaos import run_chaos, server_errors
from seasonrec.export.export import export_model
from seasonrec.model.train import TrainOptions, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def exported_shop(training_set, tmp_path_factory):
    """The tiny shop with a ranker in a model repository of its own."""
    settings, path = training_set
    root = tmp_path_factory.mktemp("chaos-shop")
    train(settings, path, root / "ckpt", TrainOptions(epochs=1, batch_size=128))
    settings = settings.model_copy(update={"triton": settings.triton.model_copy(update={"repository": root / "repo"})})
    export_model(settings, root / "ckpt", training_set=path)
    return settings


def test_faults_cost_no_server_error_and_no_accepted_event(exported_shop):
    tally, faults, lost = run_chaos(exported_shop, seconds=60, requests=100_000)
    assert server_errors(tally, "recommendation") == 0, tally.statuses
    assert server_errors(tally, "event", but=503) == 0, tally.statuses
    assert tally.transport_errors == 0
    assert len(tally.accepted) > 20 and lost == 0
    assert [f.name for f in faults] == ["kill_triton", "restart_redis", "break_rules", "swap_model"]
    # Every fault is followed by healthy answers again: not degraded, events accepted.
    assert all(f.recovered is not None for f in faults), faults
    # While Triton or Redis is down, answers degrade instead of failing.
    assert tally.degraded > 0
