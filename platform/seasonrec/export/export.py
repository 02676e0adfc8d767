"""Stage: checkpoint -> ONNX -> parity check -> a new version in the Triton model repository.

The parity check runs the exported graph with ONNX Runtime on real batches of
the training set and compares every score with PyTorch's; if any differs by
more than `TOLERANCE`, nothing is published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.export import tensorrt
from seasonrec.export.repository import CARD_FILE, ModelRepository
from seasonrec.model.batch import served_candidates
from seasonrec.model.data import Arrays, load_groups
from seasonrec.model.ranker import UNSEEN, SeasonalRanker
from seasonrec.model.train import HISTORY_FILE, VOCAB_FILE, load_model
from seasonrec.progress import task

log = logging.getLogger(__name__)
# torch.onnx warns about every torchvision operator it cannot register; this model uses none.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

ONNX_FILE = "model.onnx"
TOLERANCE = 1e-4  # max |ONNX Runtime - PyTorch| over every score, fp32
OPSET = 18
PARITY_GROUPS = 64
# `SeasonalRanker.forward`'s inputs, titles and categories explicit: the reference the served graph must equal.
MODEL_INPUTS = (
    "history_ids",
    s.HISTORY_AGE_HOURS,
    "context",
    "region",
    "cand_ids",
    "cand_categories",
    "cand_titles",
    "cand_dense",
    "cand_personal",
)


def _axes() -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name, (_, _shape) in s.RANKER_INPUTS.items():
        named = {0: "batch"}
        if name.startswith("cand_"):
            named[1] = "candidates"
        elif name.startswith("history_"):
            named[1] = "history"
        elif name in s.NEW_ITEM_INPUTS:
            named[1] = "new_items"
        axes[name] = named
    axes[s.RANKER_OUTPUT] = {0: "batch", 1: "candidates"}
    return axes


def parity_batches(training_set: Path, model: SeasonalRanker, vocab) -> list[Request]:
    """Real requests: 32 groups of the training set as they are, and one request with 200 of their candidates.

    In both, every 7th candidate plays a new launch: the version does not know its id (UNSEEN), and its title
    and category travel in the request, so parity covers both kinds of item.
    """
    arrays, _ = load_groups(training_set, vocab, model.config.history_length, max_groups=PARITY_GROUPS)
    arrays = {k: v for k, v in arrays.items() if k in MODEL_INPUTS}  # the model's inputs, not training's extras
    arrays["cand_titles"] = model.item_titles[torch.from_numpy(arrays["cand_ids"])].numpy()
    n = len(arrays["region"])
    if n < 2:
        raise SeasonrecError(f"{training_set}: the parity check needs at least 2 groups, found {n}")
    grouped = {k: v[: min(32, n)] for k, v in arrays.items()}
    one = {k: v[:1] for k, v in arrays.items() if not k.startswith("cand_")}
    for k, v in arrays.items():
        if k.startswith("cand_"):
            flat = v.reshape(-1, *v.shape[2:])
            one[k] = np.resize(flat, (200, *flat.shape[1:]))[None]
    return [Request.with_new_items(batch, model.config.n_items) for batch in (grouped, one)]


@dataclass(frozen=True)
class Request:
    """One batch two ways: the model's own inputs (`reference`) and the same request as Triton takes it (`served`)."""

    reference: Arrays
    served: Arrays

    @classmethod
    def with_new_items(cls, batch: Arrays, n_items: int, every: int | None = 7) -> Request:
        """Every `every`-th candidate made a new launch (none when None); the rest keep their known index."""
        reference = dict(batch)
        ids = batch["cand_ids"].copy()
        if every:
            ids[:, ::every] = UNSEEN
        reference["cand_ids"] = ids
        new = ids == UNSEEN
        titles = [t[m] for t, m in zip(batch["cand_titles"], new, strict=True)]
        categories = [c[m] for c, m in zip(batch["cand_categories"], new, strict=True)]
        served = {k: batch[k] for k in s.RANKER_INPUTS if k in batch}
        served.update(served_candidates(ids, n_items, titles, categories))
        return cls(reference, served)


def _scores(model: SeasonalRanker, batch: Arrays) -> np.ndarray:
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(np.ascontiguousarray(batch[k])) for k in MODEL_INPUTS}).numpy()


class ServedRanker(torch.nn.Module):
    """The ranker as Triton serves it, in `schema.RANKER_INPUTS` order: candidates by index into the version's own
    item tables, so a request carries no title of an item the version knows.

    Index `n_items + j` is row j of the request's new-item table (`new_titles`, `new_categories`): an item the
    version has never seen, scored as the model scores UNSEEN with its title and category.
    """

    def __init__(self, model: SeasonalRanker):
        super().__init__()
        self.model = model

    def forward(
        self,
        history_ids: torch.Tensor,
        history_age_hours: torch.Tensor,
        context: torch.Tensor,
        region: torch.Tensor,
        cand_ids: torch.Tensor,
        cand_dense: torch.Tensor,
        cand_personal: torch.Tensor,
        new_titles: torch.Tensor,
        new_categories: torch.Tensor,
    ) -> torch.Tensor:
        n = self.model.item_titles.shape[0]
        new = cand_ids >= n
        # Two gathers and a select: concatenating the new rows onto the whole catalogue table would copy it per call.
        known = torch.where(new, torch.full_like(cand_ids, UNSEEN), cand_ids)
        row = (cand_ids - n).clamp(min=0)
        titles = torch.where(
            new.unsqueeze(-1),
            torch.gather(new_titles, 1, row.unsqueeze(-1).expand(-1, -1, new_titles.shape[-1])),
            self.model.item_titles[known],
        )
        categories = torch.where(new, torch.gather(new_categories, 1, row), self.model.item_categories[known])
        inputs = (history_ids, history_age_hours, context, region, known, categories)
        return self.model(*inputs, cand_dense=cand_dense, cand_personal=cand_personal, cand_titles=titles)


def to_onnx(model: SeasonalRanker, sample: Arrays, path: Path) -> None:
    """`sample`: a served batch (`Request.served`)."""
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[k])) for k in s.RANKER_INPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ServedRanker(model),
            args,
            str(path),
            input_names=list(s.RANKER_INPUTS),
            output_names=[s.RANKER_OUTPUT],
            dynamic_axes=_axes(),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def check_parity(model: SeasonalRanker, path: Path, batches: list[Request]) -> float:
    """The largest |ONNX Runtime on the served inputs - PyTorch on the model's own inputs| over every score."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in batches:
        (onnx_scores,) = session.run([s.RANKER_OUTPUT], batch.served)
        worst = max(worst, float(np.abs(onnx_scores - _scores(model, batch.reference)).max()))
    return worst


def _checkpoint_hash(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in checkpoint.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# What a DP-SGD checkpoint's history says of its guarantee, copied into the card.
DP_CARD_KEYS = (
    "epsilon",
    "delta",
    "noise_multiplier",
    "max_grad_norm",
    "sample_rate",
    "epsilon_spent",
    "accountant",
    "unit",
)


def _card(checkpoint: Path, training_set: Path, max_diff: float, plan: dict, metrics: Path | None) -> dict:
    import polars as pl

    times = pl.scan_parquet(training_set).select(
        pl.col(s.REQUEST_TS).min().alias("start"), pl.col(s.REQUEST_TS).max().alias("end")
    )
    start, end = times.collect().row(0)
    history = checkpoint / HISTORY_FILE
    record = json.loads(history.read_text()) if history.is_file() else {}
    epochs = record.get("epochs", [])
    # A DP-SGD checkpoint's guarantee travels with the model; null says plainly that it had none.
    private = record.get("dp")
    card = {
        "source_checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": _checkpoint_hash(checkpoint),
        "data_window": {
            "training_set": str(training_set.resolve()),
            "first_request": datetime.fromtimestamp(start, UTC).isoformat(),
            "last_request": datetime.fromtimestamp(end, UTC).isoformat(),
        },
        "validation": min(epochs, key=lambda e: e["val_loss"]) if epochs else None,
        "parity": {"max_abs_diff": max_diff, "tolerance": TOLERANCE},
        "tensorrt": plan,
        "dp": {k: private.get(k) for k in DP_CARD_KEYS} if private else None,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Said plainly, as docs/operations.md does: an erasure reaches the stores at once, a model only
        # through its next training.
        "personal_data": (
            "Holds no user ids and no per-user weights, but its weights were learned from the purchases in"
            " data_window. A person erased after training is still reflected in them until the next"
            " scheduled retrain, which drops them."
        ),
    }
    if metrics:
        if not metrics.is_file():
            raise SeasonrecError(f"{metrics}: metrics file not found")
        card["metrics"] = _card_metrics(json.loads(metrics.read_text()))
    return card


def _card_metrics(evaluation: dict) -> dict:
    """The ranker's figures in each view of `seasonrec evaluate`, on the validation weeks and the test window."""
    test = _ranker_views(evaluation)
    validation = evaluation.get("validation")
    return {"validation": _ranker_views(validation) if validation else None, "test": test}


def _ranker_views(evaluation: dict) -> dict:
    """The ranker's figures in each view, split into repeat and explore items."""
    views = evaluation.get("views", {})
    ranker = {
        view: {split: by.get("ranker") for split, by in views.get(view, {}).items()} for view in ("catalogue", "served")
    }
    return {
        "window": {
            k: evaluation.get("data", {}).get(k) for k in ("start", "end", "test_start", "test_end", "requests")
        },
        **ranker,
        "retrieval": views.get("retrieval", {}).get("all"),
        "repeat_share@10": {view: by.get("ranker") for view, by in evaluation.get("repeat_share@10", {}).items()},
    }


def _copy_plots(evaluation: Path, stage: Path) -> None:
    """The evaluation's plots beside the card, so the serving API can show them with the version they describe."""
    from seasonrec.serving.api import REPORT_DIR

    plots = sorted(evaluation.glob("*.png"))
    if plots:
        (stage / REPORT_DIR).mkdir()
    for plot in plots:
        shutil.copy2(plot, stage / REPORT_DIR / plot.name)


def export_model(
    settings: Settings,
    checkpoint: Path,
    repository: Path | None = None,
    training_set: Path | None = None,
    version: int | None = None,
    build_tensorrt: bool = False,
    metrics: Path | None = None,
) -> dict:
    """Publish the checkpoint as a new version of the ranker; return what was written."""
    checkpoint = Path(checkpoint)
    repository = settings.paths.resolve(Path(repository or settings.triton.repository))
    training_set = Path(training_set or settings.paths.root / "training_set.parquet")
    model, vocab = load_model(checkpoint)
    model.eval()
    repo = ModelRepository(repository, settings.triton.model)
    version = repo.next_version(version)
    batches = parity_batches(training_set, model, vocab)
    with repo.staging(version) as stage, task(f"export to version {version}", total=3) as bar:
        onnx_path = stage / ONNX_FILE
        bar.note("ONNX graph")
        to_onnx(model, batches[0].served, onnx_path)
        import onnx

        bar.advance()
        bar.note("checker")
        onnx.checker.check_model(str(onnx_path), full_check=True)
        bar.advance()
        bar.note(f"parity on {len(batches)} batches")
        max_diff = check_parity(model, onnx_path, batches)
        bar.advance()
        bar.note(f"max |ONNX - PyTorch| {max_diff:.1e}")
        if not max_diff <= TOLERANCE:
            raise SeasonrecError(
                f"{checkpoint}: ONNX parity check failed: max |ONNX - PyTorch| = {max_diff:.2e} > {TOLERANCE:.0e};"
                " nothing was written"
            )
        dims = {
            "history": model.config.history_length,
            "context": model.config.context_dim,
            "title": model.config.title_dim,
            "item_dense": model.config.item_dense_dim,
            "personal": model.config.personal_dim,
        }
        (stage / tensorrt.BUILD_SCRIPT).write_text(tensorrt.build_script(dims))
        plan = {"requested": build_tensorrt, "built": False}
        if build_tensorrt:
            reason = tensorrt.unavailable_reason()
            if reason is None:
                tensorrt.build_plan(stage)
                plan["built"] = True
            else:
                plan["reason"] = reason
                log.warning(
                    "no TensorRT plan built: %s. The onnxruntime_trt config turns on Triton's TensorRT "
                    "execution accelerator instead, and the chart's init container can build the plan "
                    "on the GPU node with %s.",
                    reason,
                    tensorrt.BUILD_SCRIPT,
                )
        # The serving side turns item ids into this version's indices with its own vocabulary.
        for name in (VOCAB_FILE, "config.json"):
            shutil.copy2(checkpoint / name, stage / name)
        card = _card(checkpoint, training_set, max_diff, plan, metrics)
        (stage / CARD_FILE).write_text(json.dumps(card, indent=2))
        if metrics:
            _copy_plots(Path(metrics).parent, stage)
    target = repo.model_dir / str(version)
    return {"version": version, "path": str(target), "max_abs_diff": max_diff, "tensorrt": plan}
