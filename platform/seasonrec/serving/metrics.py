"""Prometheus metrics of the serving graph, registered once per replica process.

In their own module: Ray pickles a Serve deployment's class by value, and a
metric pickled with it would be a copy the registry never sees.
"""

from prometheus_client import Counter, Histogram

STAGE_SECONDS = Histogram(
    "seasonrec_stage_seconds",
    # fetch, score and rerank are measured inside each stage; total at the ingress.
    "Latency of each stage of a recommendation.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
)

# Counted at the ingress, which serves /metrics, from the FeatureFetcher's count for each request.
UNKNOWN_CANDIDATES = Counter(
    "seasonrec_unknown_candidates_dropped",
    "Candidate ids a request sent that the catalogue does not hold: dropped, never scored or cached.",
)
