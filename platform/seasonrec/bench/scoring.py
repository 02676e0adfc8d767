"""Scoring one request: PyTorch eager, ONNX Runtime in-process, and Triton, side by side.

Inputs have the checkpoint's shapes and random values in its vocabulary's
ranges: the cost of scoring does not depend on which items are asked about.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import numpy as np

from seasonrec import schema as s
from seasonrec.bench import percentiles
from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import progress
from seasonrec.triton.server import free_ports

WAYS = ("eager", "onnxruntime", "triton")


def random_request(config, candidates: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One request (batch of 1) with `candidates` candidates, shaped for `config`."""
    rng = np.random.default_rng(seed)
    h = config.history_length
    history = rng.integers(2, config.n_items, (1, h))
    history[:, : h // 3] = 0  # a third of the history is padding, as for most users
    return {
        "history_ids": history.astype(np.int64),
        s.HISTORY_AGE_HOURS: rng.uniform(1, 5_000, (1, h)).astype(np.float32),
        "context": rng.normal(size=(1, config.context_dim)).astype(np.float32),
        "region": rng.integers(2, config.n_regions, (1,)).astype(np.int64),
        "cand_ids": rng.integers(1, config.n_items, (1, candidates)).astype(np.int64),
        "cand_categories": rng.integers(1, config.n_categories, (1, candidates)).astype(np.int64),
        "cand_titles": rng.normal(size=(1, candidates, config.title_dim)).astype(np.float32),
        "cand_dense": rng.normal(size=(1, candidates, config.item_dense_dim)).astype(np.float32),
        "cand_personal": rng.normal(size=(1, candidates, config.personal_dim)).astype(np.float32),
    }


def _eager(model):
    import torch

    def call(request):
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in request.reference.items()})

    return call


def _onnxruntime(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda request: session.run([s.RANKER_OUTPUT], request.served)


def request_bytes(arrays: dict[str, np.ndarray]) -> int:
    """The tensors' payload: what a gRPC request carries besides a few hundred bytes of names and shapes."""
    return sum(a.nbytes for a in arrays.values())


def bench_scoring(settings: Settings, args) -> tuple[str, list[dict]]:
    from seasonrec.export.export import export_model
    from seasonrec.model.train import load_model
    from seasonrec.triton.server import TritonServer

    checkpoint = Path(args.checkpoint or settings.paths.root / "checkpoints" / "ranker")
    counts = [int(c) for c in args.candidates.split(",")]
    ways = [w for w in args.ways.split(",") if w]
    if unknown := set(ways) - set(WAYS):
        raise SeasonrecError(f"--ways: unknown {sorted(unknown)}; choose from {', '.join(WAYS)}")
    model, _ = load_model(checkpoint)
    model.eval()
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-", dir=settings.paths.root))
    bench = settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"data_dir": work}),
            "triton": settings.triton.model_copy(
                update={
                    "repository": work / "repository",
                    **free_ports(),
                    "timeout_ms": 10_000,
                }
            ),
        }
    )
    calls = {"eager": _eager(model)}
    server = None
    if {"onnxruntime", "triton"} & set(ways):
        exported = export_model(bench, checkpoint, training_set=args.training_set)
        calls["onnxruntime"] = _onnxruntime(Path(exported["path"]) / "model.onnx")
    loop = asyncio.new_event_loop()
    try:
        if "triton" in ways:
            server = TritonServer(bench)
            server.start()
            client = loop.run_until_complete(_make_client(bench))
            calls["triton"] = lambda request: loop.run_until_complete(client.score(request.served))
        title, rows = _measure(calls, ways, counts, args.requests, model.config, server)
        return title, rows
    finally:
        if server is not None:
            server.stop()
        loop.close()
        shutil.rmtree(work, ignore_errors=True)  # the export and Triton's files: this run's alone


async def _make_client(settings: Settings):
    from seasonrec.triton.client import RankerClient

    return RankerClient(settings.triton)


def _server_stats(server) -> dict[str, tuple[int, int]]:
    """Triton's cumulative (count, ns) per stage of the ranker, as the server itself measures them."""
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics(server.cfg.model)["model_stats"]
    client.close()
    totals: dict[str, tuple[int, int]] = {}
    for version in stats:
        for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
            count, ns = totals.get(stage, (0, 0))
            entry = version["inference_stats"][stage]
            totals[stage] = (count + entry["count"], ns + entry["ns"])
    return totals


def _mean_ms(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[1] - before[1]) / max(after[0] - before[0], 1) / 1e6


def _measure(calls, ways, counts, requests, config, server=None) -> tuple[str, list[dict]]:
    from seasonrec.export.export import Request

    results: dict[tuple[str, int], dict] = {}
    inside: dict[int, str] = {}
    sizes: dict[int, str] = {}
    for count in progress(counts, description="scoring, candidates per request"):
        # Every candidate known to the version, as nearly all are: the request carries no title.
        batch = Request.with_new_items(random_request(config, count), config.n_items, every=None)
        # Before index-based requests, every candidate's title embedding travelled with it.
        sent, with_titles = request_bytes(batch.served), request_bytes(batch.reference)
        sizes[count] = f"{sent / 1024:.1f} KiB ({with_titles / sent:.0f}x less than with titles)"
        for way in ways:
            before = _server_stats(server) if way == "triton" else None
            results[way, count] = percentiles(lambda fn=calls[way], b=batch: fn(b), requests, warmup=10)
            if before is not None:
                after = _server_stats(server)
                inside[count] = ", ".join(f"{stage} {_mean_ms(before[stage], after[stage]):.2f}" for stage in after)
    rows = []
    for count in counts:
        for way in ways:
            r = results[way, count]
            row = {
                "candidates": count,
                "way": way,
                "p50_ms": r["p50_ms"],
                "p99_ms": r["p99_ms"],
                "requests/s": round(1000 / r["p50_ms"]),
                "candidates/s": f"{round(1000 / r['p50_ms'] * count):,}",
                "eager p50 / this p50": round(results["eager", count]["p50_ms"] / r["p50_ms"], 2)
                if "eager" in ways
                else "",
                "this p50 / onnxruntime p50": round(r["p50_ms"] / results["onnxruntime", count]["p50_ms"], 2)
                if "onnxruntime" in ways
                else "",
                "inside Triton, mean ms": inside.get(count, "") if way == "triton" else "",
                "request tensors": sizes[count] if way == "triton" else "",
            }
            rows.append(row)
    lo, hi = min(counts), max(counts)
    for way in ways:
        ratio = results[way, hi]["p50_ms"] / results[way, lo]["p50_ms"]
        rows.append(
            {
                "candidates": f"{hi} vs {lo}",
                "way": way,
                "p50_ms": f"cost ratio {ratio:.1f}x",
                "p99_ms": f"for {hi // lo}x the candidates",
                **{k: "" for k in list(rows[0])[4:]},
            }
        )
    title = f"Ranker scoring per request, {requests} timed requests per line, concurrency 1"
    return title, rows
