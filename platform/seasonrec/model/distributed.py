"""Ray Train: the same loop as `train.fit`, on N workers with DDP.

gloo on CPU, nccl and bf16 autocast on GPU. The training groups go to every
worker once through the object store; each epoch every worker draws the same
permutation as the single-device run and takes its share of each global batch
(`shuffled_batches`), so N workers take the same steps, on the same batches,
as one device. Every epoch reports metrics and a checkpoint; after a worker
failure Ray restarts the run from the last checkpoint (`FailureConfig`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch

from seasonrec.model.batch import Vocab
from seasonrec.model.ranker import SeasonalRanker
from seasonrec.model.train import (
    HISTORY_FILE,
    TrainingProgress,
    TrainOptions,
    fit,
    prepare,
    save_checkpoint,
    shuffled_batches,
)
from seasonrec.progress import Task, task

log = logging.getLogger(__name__)
STATE_FILE = "train_state.json"


def _worker_loop(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch

    options = TrainOptions(**config["options"])
    context = ray.train.get_context()
    rank, workers = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(options.seed)
    vocab = Vocab.load(Path(config["init"]) / "vocab.json")
    model = SeasonalRanker.from_pretrained(config["init"])
    start_epoch = 0
    resume = ray.train.get_checkpoint()
    if resume:
        # A restarted worker picks up from the last epoch that was checkpointed, not from scratch.
        with resume.as_directory() as folder:
            model = SeasonalRanker.from_pretrained(folder)
            start_epoch = json.loads((Path(folder) / STATE_FILE).read_text())["epoch"] + 1
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(model)
    # Hidden ids and dropout differ between workers, as they differ between the groups of one device's batch.
    torch.manual_seed(options.seed + rank)
    data = ray.get(config["data"])
    batches = shuffled_batches(
        data["train"], options.batch_size, options.seed, rank=rank, workers=workers, min_steps=options.min_epoch_steps
    )

    shown = _Progress(config.get("progress") if rank == 0 else None)

    def report(epoch: int, metrics: dict, current: torch.nn.Module) -> None:
        shown.put(("epoch", epoch, metrics))
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                save_checkpoint(current, vocab, Path(folder), [], options)
                (Path(folder) / STATE_FILE).write_text(json.dumps({"epoch": epoch}))
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)
            if config.get("fail_at_epoch") == epoch and resume is None and rank == 0:
                raise RuntimeError(f"injected worker failure after epoch {epoch}")

    autocast = torch.bfloat16 if device.type == "cuda" else None
    fit(
        model,
        batches,
        data["val"],
        options,
        device,
        report,
        autocast=autocast,
        start_epoch=start_epoch,
        on_batch=lambda epoch, done: shown.put(("batch", epoch, done), every_s=1.0),
    )


class _Progress:
    """Rank 0's side of the driver's progress bar: a Ray queue, at most one batch update a second."""

    def __init__(self, queue):
        self.queue, self.last = queue, 0.0

    def put(self, update: tuple, every_s: float = 0.0) -> None:
        if self.queue is None or (now := time.monotonic()) - self.last < every_s:
            return
        self.last = now
        with contextlib.suppress(Exception):  # a full or gone queue costs a progress line, never the run
            self.queue.put_nowait(update)


class _Follower:
    """The driver's side: the workers' updates onto the bar, and each epoch's metrics as rank 0 saw them.

    Ray's `metrics_dataframe` keeps only the checkpoints it kept (two), so the history comes from here.
    """

    def __init__(self, queue, bar: Task):
        self.queue, self.shown, self.epochs = queue, TrainingProgress(bar), {}
        self.repeated = 0  # epochs trained twice: a restart that did not resume from a checkpoint
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _take(self, update: tuple) -> None:
        kind, epoch, value = update
        if kind == "batch":
            self.shown.batch(epoch, value)
        else:
            self.repeated += epoch in self.epochs
            self.epochs[epoch] = value  # the last word counts
            self.shown.epoch(epoch, value)

    def _run(self) -> None:
        from ray.util.queue import Empty

        while not self.stop.is_set():
            try:
                self._take(self.queue.get(timeout=0.5))
            except Empty:
                continue
            except Exception:  # the queue's actor is gone: the run is ending
                return

    def finish(self) -> list[dict]:
        """Stop following, take what is still queued, and return the epochs in order."""
        self.stop.set()
        self.thread.join(timeout=5)
        with contextlib.suppress(Exception):
            while not self.queue.empty():
                self._take(self.queue.get_nowait())
        return [self.epochs[e] for e in sorted(self.epochs)]


def train_distributed(
    settings,
    training_set: Path,
    out: Path,
    options: TrainOptions,
    workers: int = 2,
    gpu: bool = False,
    init_from: Path | None = None,
    val_weeks: int = 4,
    max_failures: int = 2,
    storage: Path | None = None,
    fail_at_epoch: int | None = None,
) -> dict:
    """Train with Ray Train; copy the best checkpoint (lowest validation loss) to `out`."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    model, vocab, train_arrays, val_arrays, times = prepare(settings, training_set, init_from, val_weeks)

    out = Path(out)
    init_dir = out.parent / f".{out.name}-init"
    save_checkpoint(model, vocab, init_dir, [], options)
    if not ray.is_initialized():
        # Inside `ray job submit`, RAY_ADDRESS points at the cluster; alone, start a local one.
        # "local": a cluster of our own, even where a `ray start` left /tmp/ray/ray_current_cluster behind
        # (Ray would otherwise try to join it, dead or alive).
        alone = {"address": "local", "include_dashboard": False, "log_to_driver": False}
        # Ray's own INFO lines ("Started a local Ray instance") follow the CLI's level for other libraries.
        level = max(logging.INFO, logging.getLogger().getEffectiveLevel())
        ray.init(logging_level=level, **({} if os.environ.get("RAY_ADDRESS") else alone))
    # Once into the object store, read in place by the workers of a node; also what a restarted worker reads.
    data = ray.put({"train": train_arrays, "val": val_arrays})
    # No CPU of its own: on a 2-core machine both are the workers'.
    queue = Queue(maxsize=1000, actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "options": asdict(options),
            "init": str(init_dir.resolve()),
            "data": data,
            "fail_at_epoch": fail_at_epoch,
            "progress": queue,
        },
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu),
        run_config=RunConfig(
            name=out.name,
            storage_path=str((storage or out.parent / ".ray_results").resolve()),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
            ),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    # Ray Train's `fit` stays on the main thread (it may install signal handlers); a thread follows the queue.
    with task(f"training on Ray ({workers} workers)", total=options.epochs) as bar:
        follower = _Follower(queue, bar)
        follower.thread.start()
        try:
            result = trainer.fit()
        finally:
            followed = follower.finish()
            ray.kill(queue.actor)
    best = result.get_best_checkpoint(metric="val_loss", mode="min") or result.checkpoint
    with best.as_directory() as folder:
        loaded = SeasonalRanker.from_pretrained(folder)
    epochs = followed
    if not epochs and result.metrics_dataframe is not None:  # no update came through: what Ray kept
        epochs = result.metrics_dataframe.to_dict(orient="records")
    save_checkpoint(loaded, vocab, out, [], options)
    keep = ("epoch", "train_loss", "val_loss", "val_top1", "groups_per_second")
    history = [{k: e[k] for k in keep if k in e} for e in epochs]
    (out / HISTORY_FILE).write_text(json.dumps({"options": asdict(options), "epochs": history}, indent=2))
    return {
        "checkpoint": str(out),
        "workers": workers,
        "groups": len(times),
        "epochs_run": len(history),
        "epochs_repeated": follower.repeated,
        "best_val_loss": min((e["val_loss"] for e in history), default=None),
    }
