"""`seasonrec bench chaos`, short, on the Redis profile: Triton killed, Redis stopped, bad rules, a model swap."""

from __future__ import annotations

import warnings

import pytest

from seasonrec.bench.chaos import run_chaos, server_errors

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_faults_cost_no_server_error_and_no_accepted_event(training_set, ranker_repository):
    settings, _ = training_set
    settings = settings.model_copy(
        update={"triton": settings.triton.model_copy(update={"repository": ranker_repository})}
    )
    tally, faults, lost = run_chaos(settings, seconds=60, requests=100_000)
    assert server_errors(tally, "recommendation") == 0, tally.statuses
    assert server_errors(tally, "event", but=503) == 0, tally.statuses
    assert tally.transport_errors == 0
    assert len(tally.accepted) > 20 and lost == 0
    assert [f.name for f in faults] == ["kill_triton", "restart_redis", "break_rules", "swap_model"]
    # Every fault is followed by healthy answers again: not degraded, events accepted after Redis is back.
    assert all(f.recovered is not None for f in faults), faults
    # The swap took: the answers after it come from the new version, and none from the old one.
    swap = faults[-1]
    after = {version for t, version in tally.healthy if t > swap.recovered + 1}  # 1 s: answers in flight
    assert swap.version is not None and after == {swap.version}, (swap, after)
    # While Triton or Redis is down, answers degrade at once instead of failing or hanging.
    down = {f.name: tally.degraded_between(f.injected, f.repaired) for f in faults}
    assert down["kill_triton"] > 0 and down["restart_redis"] > 0, down
    assert tally.slowest[0] < 5, (tally.slowest, faults)
    if tally.unplanned:  # a Triton that died between faults was restarted as Kubernetes would: say why
        warnings.warn(f"Triton found down between faults: {tally.unplanned}", stacklevel=1)
