"""`report.html` with PNG plots: metrics per week against each baseline, and the training curves."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes about axis units are noise here
import matplotlib.pyplot as plt  # noqa: E402

from seasonrec.model.metrics import METRICS  # noqa: E402
from seasonrec.model.train import HISTORY_FILE  # noqa: E402


def _weekly_plot(metrics: dict, out: Path) -> str:
    weeks = list(metrics["slices"]["week"])
    methods = ["ranker", *metrics["baselines"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("ndcg@10", "hr@10"), strict=True):
        for method in methods:
            ax.plot(
                weeks,
                [metrics["slices"]["week"][w].get(method, {}).get(metric) for w in weeks],
                marker="o",
                label=method,
                linewidth=2.5 if method == "ranker" else 1,
            )
        ax.set_title(f"{metric} per test week")
        ax.tick_params(axis="x", rotation=60)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "metrics_per_week.png", dpi=90)
    plt.close(fig)
    return "metrics_per_week.png"


def _training_plot(checkpoint: Path, out: Path) -> str | None:
    path = Path(checkpoint) / HISTORY_FILE
    if not path.is_file():
        return None
    epochs = json.loads(path.read_text())["epochs"]
    if not epochs:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], marker="o", label="train loss")
    ax.plot([e["epoch"] for e in epochs], [e["val_loss"] for e in epochs], marker="o", label="validation loss")
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=90)
    plt.close(fig)
    return "training_curves.png"


def write_report(metrics: dict, checkpoint: Path, out: Path) -> Path:
    methods = {"ranker": metrics["ranker"], **metrics["baselines"]}
    header = "".join(f"<th>{m}</th>" for m in METRICS)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{vals[m]:.4f}</td>" for m in METRICS) + "</tr>"
        for name, vals in methods.items()
    )
    images = [_weekly_plot(metrics, out), _training_plot(checkpoint, out)]
    figures = "".join(f'<p><img src="{i}" alt="{i}"></p>' for i in images if i)
    data = html.escape(json.dumps(metrics["data"]))
    page = (
        "<!doctype html><meta charset='utf-8'><title>seasonrec evaluation</title>"
        f"<h1>seasonrec evaluation</h1><p>{data}</p>"
        f"<table border=1 cellpadding=4><tr><th>method</th>{header}</tr>{body}</table>{figures}"
    )
    path = out / "report.html"
    path.write_text(page)
    return path


def metrics_table(metrics: dict) -> str:
    """A plain-text table of the ranker and every baseline, best NDCG@10 first."""
    methods = {"ranker": metrics["ranker"], **metrics["baselines"]}
    width = max(len(m) for m in methods)
    lines = [f"{'method':<{width}}  " + "  ".join(f"{m:>8}" for m in METRICS)]
    for name, vals in sorted(methods.items(), key=lambda kv: -kv[1]["ndcg@10"]):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{vals[m]:>8.4f}" for m in METRICS))
    return "\n".join(lines)
