"""Stage: train (or fine-tune) the ranker on the Feast training set.

The loop runs on one device without Ray; Ray Train runs the same loop on each
worker with DDP. Each epoch ends with a validation pass, a checkpoint and a
report; training stops early when validation stops improving.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from transformers.utils import logging as hf_logging

from seasonrec import schema as s
from seasonrec.errors import SeasonrecError
from seasonrec.features.training_set import LOG_Q
from seasonrec.model.batch import CONTEXT_DIM, ITEM_DENSE_COLUMNS, PERSONAL_COLUMNS, Vocab, catalogue_tables
from seasonrec.model.data import Arrays
from seasonrec.model.ranker import UNSEEN, SeasonalRanker, SeasonalRankerConfig
from seasonrec.progress import Task, task

if TYPE_CHECKING:
    from seasonrec.model.private import DPOptions, PrivateTraining

log = logging.getLogger(__name__)
# A bar per load and save of a 1-shard model is noise in our own progress output.
hf_logging.disable_progress_bar()
VOCAB_FILE = "vocab.json"
HISTORY_FILE = "training_history.json"


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 2
    # Candidate ids hidden at this rate, so the model also learns to rank items it has never seen.
    id_dropout: float = 0.1
    seed: int = 0
    # An epoch (one validation, checkpoint and early-stopping decision) takes at least this many optimizer steps,
    # passing over the groups again as needed: a small shop's single pass is a handful of steps (the synthetic
    # shop's is 5), and eight of them leave the model far from trained. 0: an epoch is one pass.
    min_epoch_steps: int = 0


def new_model(vocab: Vocab, profiles: pl.DataFrame, history_length: int, title_dim: int) -> SeasonalRanker:
    config = SeasonalRankerConfig(
        **vocab.sizes,
        title_dim=title_dim,
        history_length=history_length,
        context_dim=CONTEXT_DIM,
        item_dense_dim=len(ITEM_DENSE_COLUMNS),
        personal_dim=len(PERSONAL_COLUMNS),
    )
    model = SeasonalRanker(config)
    titles, categories = catalogue_tables(vocab, profiles, title_dim)
    model.item_titles.copy_(titles)
    model.item_categories.copy_(categories)
    return model


def load_model(checkpoint: Path) -> tuple[SeasonalRanker, Vocab]:
    checkpoint = Path(checkpoint)
    config = checkpoint / "config.json"
    if not config.is_file() or not (checkpoint / VOCAB_FILE).is_file():
        raise SeasonrecError(f"{checkpoint}: not a seasonrec checkpoint (needs config.json and {VOCAB_FILE})")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise SeasonrecError(f"{config}: not a JSON object") from exc
    # transformers would load another architecture's config with a warning and random weights.
    if model_type != SeasonalRankerConfig.model_type:
        raise SeasonrecError(
            f"{config}: model_type is {model_type!r}, not {SeasonalRankerConfig.model_type!r}: an incompatible model"
        )
    try:
        model = SeasonalRanker.from_pretrained(checkpoint)
    except Exception as exc:  # safetensors, torch and transformers each raise their own types
        raise SeasonrecError(f"{checkpoint}: cannot load the ranker ({str(exc).splitlines()[0]})") from exc
    return model, Vocab.load(checkpoint / VOCAB_FILE)


def _tensors(arrays: Arrays, index: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v[index]).to(device) for k, v in arrays.items()}


def sampled_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The group's scores less each row's log expected count among the sampled negatives (`LOG_Q`).

    The sampled softmax's correction: the model's own scores then rank as if every catalogue item were a
    negative, whichever items were oversampled.
    """
    scores = model(**{k: v for k, v in batch.items() if k != LOG_Q})
    return scores - batch[LOG_Q] if LOG_Q in batch else scores


def group_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    scores = sampled_scores(model, batch)
    return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))


@torch.no_grad()
def evaluate_groups(model: torch.nn.Module, arrays: Arrays, device: torch.device, batch_size: int = 1024) -> dict:
    """Validation loss and how often the purchase ranks first in its group."""
    model.eval()
    n = len(arrays["region"])
    losses, hits = [], []
    for start in range(0, n, batch_size):
        batch = _tensors(arrays, np.arange(start, min(n, start + batch_size)), device)
        scores = sampled_scores(model, batch)
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=device)
        losses.append(F.cross_entropy(scores, target, reduction="sum").item())
        hits.append((scores.argmax(-1) == 0).sum().item())
    metrics = {"val_loss": sum(losses) / n, "val_top1": sum(hits) / n}
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Early stopping compares these figures: a last-bit difference between workers would stop one worker
        # and leave the others waiting in DDP forever, so every worker takes rank 0's.
        agreed = torch.tensor(list(metrics.values()), dtype=torch.float64, device=device)
        torch.distributed.broadcast(agreed, src=0)
        metrics = dict(zip(metrics, agreed.tolist(), strict=True))
    return metrics


def shuffled_batches(
    arrays: Arrays, batch_size: int, seed: int, rank: int = 0, workers: int = 1, min_steps: int = 0
) -> Callable[[int], Iterable[Arrays]]:
    """Batches for one epoch: a fresh permutation of the groups, cut into `batch_size` global batches; as many
    passes, each freshly permuted, as make at least `min_steps` batches.

    With `workers` > 1 this worker takes every `workers`-th group of each global batch, so together the workers
    step through exactly the single-device batches: same groups, same global batch, same number of steps.
    """
    n = len(arrays["region"])
    # Every worker needs at least one group per step, or DDP's collectives wait forever.
    batch_size = max(batch_size, workers)
    passes = max(1, math.ceil(min_steps / max(1, math.ceil(n / batch_size))))

    def epoch_batches(epoch: int) -> Iterator[Arrays]:
        for p in range(passes):
            # The first pass keeps the seed it always had, so a one-pass epoch is the epoch it always was.
            order = np.random.default_rng([seed, epoch] if p == 0 else [seed, epoch, p]).permutation(n)
            for start in range(0, n, batch_size):
                batch = order[start : start + batch_size]
                # A last batch smaller than the worker count is dropped on every worker alike.
                if len(batch) < workers:
                    break
                index = batch[rank::workers]
                yield {k: v[index] for k, v in arrays.items()}

    return epoch_batches


def fit(
    model: torch.nn.Module,
    batches: Callable[[int], Iterable[Arrays]],
    val: Arrays,
    options: TrainOptions,
    device: torch.device,
    on_epoch: Callable[[int, dict, torch.nn.Module], None],
    autocast: torch.dtype | None = None,
    start_epoch: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
    private: PrivateTraining | None = None,
) -> list[dict]:
    """The training loop. `batches(epoch)` yields this worker's groups; `on_epoch(epoch, metrics, model)`
    checkpoints and reports, and may be Ray's; `on_batch(epoch, batches_done)` shows progress.

    With `private` (see `seasonrec.model.private`) it is DP-SGD: Opacus wraps the model and the optimizer, which
    then clips each group's gradient and adds noise, and `batches` should be `private.batches`."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    titles = getattr(model, "module", model).item_titles
    if private is not None:
        model, optimizer = private.attach(model, optimizer)
    history: list[dict] = []
    best, stale = math.inf, 0
    for epoch in range(start_epoch, options.epochs):
        model.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        for done, arrays in enumerate(batches(epoch), 1):
            batch = {k: torch.as_tensor(np.asarray(v)).to(device) for k, v in arrays.items()}
            n_groups = len(batch["region"])
            # Titles are looked up before ids are hidden: a never-seen item is served with its own title.
            batch["cand_titles"] = titles[batch["cand_ids"]]
            hide = torch.rand(batch["cand_ids"].shape, device=device) < options.id_dropout
            batch["cand_ids"] = torch.where(hide, torch.full_like(batch["cand_ids"], UNSEEN), batch["cand_ids"])
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                loss = group_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # Under DP the optimizer clips each group's gradient itself; a clip of their sum would come too late.
            if private is None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            # A Poisson-sampled batch can be empty (its loss is NaN); it still takes its noisy step, as counted.
            total += loss.item() * n_groups if n_groups else 0.0
            seen += n_groups
            if on_batch is not None:
                on_batch(epoch, done)
        seconds = time.perf_counter() - started
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each worker saw only its share of the epoch's groups; report the whole epoch.
            summed = torch.tensor([total, seen], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(summed)
            total, seen = summed.tolist()
        metrics = {
            "epoch": epoch,
            "train_loss": total / seen,
            "groups_per_second": seen / seconds,
            **evaluate_groups(model, val, device),
        }
        if private is not None:
            metrics["epsilon_spent"] = private.spent()
        history.append(metrics)
        on_epoch(epoch, metrics, model)
        log.info("epoch %d/%d: %s", epoch + 1, options.epochs, epoch_note(metrics))
        if metrics["val_loss"] < best - 1e-4:
            best, stale = metrics["val_loss"], 0
        else:
            stale += 1
            if stale >= options.patience:
                log.info("early stop: validation loss has not improved for %d epochs", stale)
                break
    return history


def epoch_note(metrics: dict) -> str:
    """An epoch's result in a few words, for progress and logs."""
    return (
        f"train_loss {metrics['train_loss']:.4f}, val_loss {metrics['val_loss']:.4f}, "
        f"val_top1 {metrics.get('val_top1', float('nan')):.3f}, {metrics['groups_per_second']:,.0f} groups/s"
    )


def save_checkpoint(
    model: torch.nn.Module, vocab: Vocab, out: Path, metrics: list[dict], options: TrainOptions
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    getattr(model, "module", model).save_pretrained(out)
    vocab.save(out / VOCAB_FILE)
    (out / HISTORY_FILE).write_text(json.dumps({"options": asdict(options), "epochs": metrics}, indent=2))


def catalogue(features_dir: Path) -> pl.DataFrame:
    path = Path(features_dir) / f"{s.ITEM_PROFILE}.parquet"
    if not path.is_file():
        raise SeasonrecError(f"{path}: not found; run `seasonrec features build` first")
    return pl.read_parquet(path)


def _check_title_width(features_dir: Path, profiles: pl.DataFrame, checkpoint: Path, title_dim: int) -> None:
    titles = profiles[s.TITLE_EMBEDDING].drop_nulls()
    if len(titles) and len(titles[0]) != title_dim:
        raise SeasonrecError(
            f"{Path(features_dir) / s.ITEM_PROFILE}.parquet: column '{s.TITLE_EMBEDDING}' has {len(titles[0])}"
            f" dimensions but the checkpoint {checkpoint} takes {title_dim}: an incompatible model"
            " (was it trained with another title encoder?)"
        )


def add_new_items(model: SeasonalRanker, vocab: Vocab, profiles: pl.DataFrame) -> Vocab:
    """The vocabulary with the items launched since `model` was trained appended, and the model grown to match.

    Without an index of its own a new item would train as UNSEEN, with no title in the model's buffer; fine-tuning
    on the new season's items is the point of the seasonal refresh.
    """
    new = sorted(set(profiles[s.ITEM_ID].to_list()) - set(vocab.items))
    grown = Vocab((*vocab.items, *new), vocab.categories, vocab.regions)
    titles, categories = catalogue_tables(grown, profiles, model.config.title_dim)
    model.add_items(titles[model.config.n_items :], categories[model.config.n_items :])
    return grown


def prepare(settings, training_set: Path, init_from: Path | None, val_weeks: int):
    """(model, vocab, training arrays, validation arrays, group times): a new model, or last season's."""
    from seasonrec.model.data import load_groups, split_by_time

    if init_from:
        model, vocab = load_model(init_from)
        profiles = catalogue(settings.paths.features)
        _check_title_width(settings.paths.features, profiles, init_from, model.config.title_dim)
        vocab = add_new_items(model, vocab, profiles)
    else:
        profiles = catalogue(settings.paths.features)
        regions = pl.read_parquet(training_set, columns=[s.REGION])[s.REGION].unique().to_list()
        vocab = Vocab.build(profiles, regions)
        model = new_model(vocab, profiles, settings.features.history_length, settings.features.embedding_dim)
    arrays, times = load_groups(training_set, vocab, model.config.history_length)
    train_arrays, val_arrays = split_by_time(arrays, times, val_weeks)
    return model, vocab, train_arrays, val_arrays, times


class TrainingProgress:
    """A training bar's note: the epoch and batch under way, and the last epoch's validation result."""

    def __init__(self, bar: Task):
        self.bar, self.last = bar, ""

    def batch(self, epoch: int, done: int) -> None:
        self.bar.note(f"epoch {epoch + 1}, batch {done}{self.last}")

    def epoch(self, epoch: int, metrics: dict) -> None:
        self.last = f" · val_loss {metrics['val_loss']:.4f}, val_top1 {metrics.get('val_top1', float('nan')):.3f}"
        self.bar.set(epoch + 1)
        self.bar.note(self.last.removeprefix(" · "))


def train(
    settings,
    training_set: Path,
    out: Path,
    options: TrainOptions,
    init_from: Path | None = None,
    val_weeks: int = 4,
    gpu: bool = False,
    private: DPOptions | None = None,
) -> dict:
    """Train on one device (no Ray), the GPU with bf16 autocast if `gpu`; keep the best validation epoch in `out`.

    With `private`, DP-SGD through Opacus (`seasonrec.model.private`): the history records ε, δ and the noise."""
    # Before `prepare`, which reads the whole training set: a missing GPU should fail at once.
    if gpu and not torch.cuda.is_available():
        raise SeasonrecError("--gpu: no CUDA device is visible")
    torch.manual_seed(options.seed)
    model, vocab, train_arrays, val_arrays, times = prepare(settings, training_set, init_from, val_weeks)
    device = torch.device("cuda" if gpu else "cpu")
    best = {"val_loss": math.inf}

    batches = shuffled_batches(train_arrays, options.batch_size, options.seed, min_steps=options.min_epoch_steps)
    autocast = torch.bfloat16 if gpu else None
    dp = None
    if private is not None:
        from seasonrec.model.private import PrivateTraining, dp_model, plain_model

        dp = PrivateTraining(train_arrays, options.batch_size, options.epochs, private)
        model, batches = dp_model(model), dp.batches
        # fp32 even on a GPU: under bf16 autocast Opacus would compute the per-sample gradients, and the norms
        # that the clipping bound (which the privacy guarantee rests on) is checked against, in bf16.
        autocast = None
    with task(f"training on {device.type}" + (" with DP-SGD" if dp else ""), total=options.epochs) as bar:
        shown = TrainingProgress(bar)

        def keep_best(epoch: int, metrics: dict, current: torch.nn.Module) -> None:
            shown.epoch(epoch, metrics)
            if metrics["val_loss"] < best["val_loss"]:
                best.update(metrics)
                # Under DP, `current` is Opacus's wrapper around Opacus's layers; the checkpoint is the ordinary model.
                save_checkpoint(plain_model(current) if dp else current, vocab, Path(out), [], options)

        # Without DP, the very call it always was (`private` is only passed when there is one).
        dp_args = {"private": dp} if dp is not None else {}
        history = fit(
            model.to(device),
            batches,
            val_arrays,
            options,
            device,
            keep_best,
            autocast=autocast,
            on_batch=shown.batch,
            **dp_args,
        )
    record = {"options": asdict(options), "epochs": history}
    if dp is not None:
        record["dp"] = dp.record()
    (Path(out) / HISTORY_FILE).write_text(json.dumps(record, indent=2))
    result = {"checkpoint": str(out), "groups": len(times), "best": best, "epochs_run": len(history)}
    return result | ({"dp": record["dp"]} if dp is not None else {})
