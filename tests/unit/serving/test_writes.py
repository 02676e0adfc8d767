"""The new-user rate: a token bucket per FeatureFetcher replica."""

from seasonrec.serving.writes import TokenBucket


def test_new_users_are_limited_to_their_rate_and_it_refills_with_time():
    now = [0.0]
    bucket = TokenBucket(per_minute=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 29.0
    assert bucket.take() is False
    now[0] = 31.0  # one token back after half a minute
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] = 10_000.0  # never more than a minute's worth saved up
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_a_limit_of_zero_refuses_every_new_user():
    assert TokenBucket(per_minute=0).take() is False
