"""`report.html` with PNG plots: the three views, the repeat/explore split, seasonal correctness, training curves."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes about axis units are noise here
import matplotlib.pyplot as plt  # noqa: E402

from seasonrec import schema as s  # noqa: E402
from seasonrec.model.metrics import LIST_METRICS, METRICS  # noqa: E402
from seasonrec.model.train import HISTORY_FILE  # noqa: E402
from seasonrec.summary import short_title  # noqa: E402

SPLITS = ("all", "repeat", "explore")
SHARE = "repeat_share@10"
TITLE_WIDTH = 40


def _methods(metrics: dict) -> list[str]:
    return ["ranker", *metrics["baselines"]]


def _weekly_plot(metrics: dict, out: Path) -> str:
    weeks = list(metrics["slices"]["week"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("ndcg@10", "hr@10"), strict=True):
        for method in _methods(metrics):
            ax.plot(
                weeks,
                [metrics["slices"]["week"][w].get(method, {}).get(metric) for w in weeks],
                marker="o",
                label=method,
                linewidth=2.5 if method == "ranker" else 1,
            )
        ax.set_title(f"catalogue view: {metric} per test week")
        ax.tick_params(axis="x", rotation=60)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "metrics_per_week.png", dpi=90)
    plt.close(fig)
    return "metrics_per_week.png"


def _views_plot(metrics: dict, out: Path) -> str:
    """NDCG@10 of every method in the catalogue and served views, split into all, repeat and explore items."""
    methods = _methods(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
    width = 0.8 / len(SPLITS)
    for ax, view in zip(axes, ("catalogue", "served"), strict=True):
        for j, split in enumerate(SPLITS):
            values = [metrics["views"][view].get(split, {}).get(m, {}).get("ndcg@10", 0.0) for m in methods]
            ax.bar([i + j * width for i in range(len(methods))], values, width, label=split)
        ax.set_xticks([i + width for i in range(len(methods))], methods, rotation=30, ha="right")
        ax.set_title(f"{view} view: NDCG@10")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=len(SPLITS))
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(out / "views.png", dpi=90)
    plt.close(fig)
    return "views.png"


def _retrieval_plot(metrics: dict, out: Path) -> str:
    retrieval = metrics["views"]["retrieval"]
    sources = list(retrieval["all"])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(SPLITS)
    for j, split in enumerate(SPLITS):
        values = [retrieval.get(split, {}).get(src, {}).get("recall", 0.0) for src in sources]
        ax.bar([i + j * width for i in range(len(sources))], values, width, label=split)
    ax.set_xticks([i + width for i in range(len(sources))], sources)
    ax.set_title(f"retrieval view: recall@{metrics['data']['candidates']} by candidate source")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "retrieval.png", dpi=90)
    plt.close(fig)
    return "retrieval.png"


def _seasonality_plot(metrics: dict, out: Path) -> str | None:
    seasons = metrics.get("seasonality")
    if not seasons:
        return None
    methods = _methods(metrics)
    halves = list(seasons)
    fig, axes = plt.subplots(len(halves), 2, figsize=(13, 3.5 * len(halves)), squeeze=False)
    for row, half in enumerate(halves):
        months = list(seasons[half])
        width = 0.8 / len(methods)
        for col, key in enumerate(("in_season_share@10", "off_season_rate@10")):
            ax = axes[row][col]
            for j, m in enumerate(methods):
                values = [seasons[half][month].get(m, {}).get(key, 0.0) for month in months]
                ax.bar([i + j * width for i in range(len(months))], values, width, label=m)
            ax.set_xticks([i + 0.4 for i in range(len(months))], [f"month {m}" for m in months])
            ax.set_title(f"{half}ern hemisphere: {key} (served)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "seasonality.png", dpi=90)
    plt.close(fig)
    return "seasonality.png"


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


def _html_table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table border=1 cellpadding=4><tr>{head}</tr>{body}</table>"


def view_rows(metrics: dict, view: str) -> tuple[list[str], list[list]]:
    """One row per method: the view's metrics over all items, NDCG@10 on repeat and explore items, repeat share."""
    names = METRICS if view == "catalogue" else LIST_METRICS
    views = metrics["views"][view]
    rows = []
    for m in _methods(metrics):
        split = {k: views.get(k, {}).get(m, {}).get("ndcg@10", float("nan")) for k in ("repeat", "explore")}
        rows.append([m, *(views["all"][m][n] for n in names), split["repeat"], split["explore"]])
        rows[-1].append(metrics["repeat_share@10"][view][m])
    return ["method", *names, "ndcg@10 repeat", "ndcg@10 explore", SHARE], rows


def retrieval_rows(metrics: dict) -> tuple[list[str], list[list]]:
    retrieval = metrics["views"]["retrieval"]
    rows = [
        [src, *(retrieval.get(k, {}).get(src, {}).get("recall", float("nan")) for k in SPLITS)]
        for src in retrieval["all"]
    ]
    n = metrics["data"]["candidates"]
    return ["source", *(f"recall@{n} {k}" for k in SPLITS)], rows


def seasonality_rows(metrics: dict) -> tuple[list[str], list[list]]:
    rows = []
    for half, months in metrics.get("seasonality", {}).items():
        for month, methods in months.items():
            for m, v in methods.items():
                rows.append([half, month, m, v["in_season_share@10"], v["off_season_rate@10"], v["requests"]])
    return ["hemisphere", "month", "method", "in-season share@10", "off-season rate@10", "requests"], rows


def example_title(example: dict) -> str:
    return f"The ranker's list for {example[s.USER_ID]} in {example['region']} on {example['at']} (served top 10)"


def example_rows(example: dict) -> tuple[list[str], list[list]]:
    """An example list by name: title (shortened) beside the id, the category, and why it is there."""
    rows = []
    for rank, item in enumerate(example["items"], 1):
        title = short_title(item.get(s.TITLE), TITLE_WIDTH)
        rows.append([rank, title, item[s.ITEM_ID], item.get(s.CATEGORY) or "", ", ".join(item["reasons"])])
    return ["#", "title", "item", "category", "reasons"], rows


def write_report(metrics: dict, checkpoint: Path, out: Path) -> Path:
    sections = [
        ("Served view: candidates, scores, rules, top 10 (what users get)", view_rows(metrics, "served")),
        ("Catalogue view: the whole catalogue ranked", view_rows(metrics, "catalogue")),
        ("Retrieval view: recall of the candidate stage", retrieval_rows(metrics)),
    ]
    if metrics.get("seasonality"):
        sections.append(("Seasonal correctness of the served top 10", seasonality_rows(metrics)))
    sections += [(example_title(e), example_rows(e)) for e in metrics.get("examples", [])]
    tables = "".join(f"<h2>{html.escape(title)}</h2>{_html_table(*table)}" for title, table in sections)
    plots = [
        _views_plot(metrics, out),
        _retrieval_plot(metrics, out),
        _seasonality_plot(metrics, out),
        _weekly_plot(metrics, out),
        _training_plot(checkpoint, out),
    ]
    figures = "".join(f'<p><img src="{i}" alt="{i}"></p>' for i in plots if i)
    data = html.escape(json.dumps(metrics["data"]))
    page = (
        "<!doctype html><meta charset='utf-8'><title>seasonrec evaluation</title>"
        f"<h1>seasonrec evaluation</h1><p>{data}</p>"
        "<p>Repeat items were bought by the user before the request; explore items are new to them"
        " (Li et al., ACM TOIS 2023).</p>"
        f"{tables}{figures}"
    )
    path = out / "report.html"
    path.write_text(page)
    return path


def _text_table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = [
        title,
        "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))),
    ]
    for r in cells:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def metrics_table(metrics: dict) -> str:
    """Plain-text tables of every view, best served NDCG@10 first."""
    header, served = view_rows(metrics, "served")
    blocks = [
        _text_table(
            "served view (candidates -> scores -> rules -> top 10)", header, sorted(served, key=lambda r: -r[1])
        )
    ]
    header, catalogue = view_rows(metrics, "catalogue")
    blocks.append(_text_table("catalogue view", header, sorted(catalogue, key=lambda r: -r[1])))
    blocks.append(_text_table("retrieval view", *retrieval_rows(metrics)))
    if metrics.get("seasonality"):
        # The ranker's rows only: every method's, 70 lines of them, are in report.html.
        header, rows = seasonality_rows(metrics)
        ranker = [r for r in rows if r[2] == "ranker"]
        blocks.append(_text_table("seasonal correctness of the ranker (served top 10)", header, ranker))
    return "\n\n".join(blocks)


def _markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_summary(metrics: dict) -> str:
    """The tables of `report.html` in Markdown, for docs/benchmarks.md."""
    n = metrics["data"]["candidates"]
    blocks = [
        "**served** (candidates, then each method's scores, then `configs/rules.yaml`, then the top 10)\n\n"
        + _markdown(*view_rows(metrics, "served")),
        "**catalogue** (the whole catalogue ranked)\n\n" + _markdown(*view_rows(metrics, "catalogue")),
        f"**retrieval** (recall@{n} of the candidate stage, by source)\n\n" + _markdown(*retrieval_rows(metrics)),
    ]
    if metrics.get("seasonality"):
        blocks.append("**seasonal correctness** (served top 10)\n\n" + _markdown(*seasonality_rows(metrics)))
    return "\n\n".join(blocks) + "\n"
