"""Stage: evaluate a ranker checkpoint against the baselines, split by time, in three views.

- **catalogue**: each method ranks the whole catalogue (launched items only).
- **retrieval**: the recall of the candidate stage, for each source and for their union.
- **served**: the service replayed offline: the candidates, then the method's
  scores, then the business rules, then the top k. Every method goes through the
  same candidates and rules, with the functions serving calls (`candidates.sources`,
  `serving.rules`), fed the state as of each request (`model.replay`).

Each view is split into repeat items (bought by the user before) and explore
items (new to the user), as in Li et al., "A Next Basket Recommendation Reality
Check" (ACM TOIS 2023), and reports the share of repeat items in each top 10.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import torch

from seasonrec import schema as s
from seasonrec.candidates.sources import propose
from seasonrec.config import Settings
from seasonrec.data.validate import find_table, scan_table
from seasonrec.errors import SeasonrecError
from seasonrec.model.baselines import BASELINES, Baselines
from seasonrec.model.batch import personal, user_arrays
from seasonrec.model.metrics import LIST_METRICS, METRICS, list_metrics, mean_metrics, rank_metrics, recall
from seasonrec.model.replay import (
    ArrivalTable,
    Bought,
    Catalogue,
    NeighbourTable,
    WeekItems,
    requests,
    user_state,
)
from seasonrec.model.train import load_model
from seasonrec.progress import progress
from seasonrec.serving.rules import CandidateColumns, Rules, from_columns, load_rules, purchases, rerank

log = logging.getLogger(__name__)
METHODS = ("ranker", *BASELINES)
SPLITS = ("all", "repeat", "explore", "new_items")
UNION = "union"
SERVED_K = 10
# Request x item pairs the ranker scores at once: past about one request of a large catalogue, batching
# more requests adds memory traffic (their [B, C, 2d] activations) rather than saving work.
PAIRS_PER_CHUNK = 40_000


class Replay:
    """What every request of an evaluation reads, loaded once, and the service replayed on it."""

    def __init__(self, settings: Settings, checkpoint: Path, purchases: pl.DataFrame, start: datetime):
        self.model, self.vocab = load_model(checkpoint)
        self.model.eval()
        self.features = features = settings.paths.features
        self.catalogue = Catalogue(features, self.vocab, self.model.config.title_dim)
        # What the model makes of each item's id, category and title never changes: once per evaluation.
        static = {k: torch.from_numpy(v) for k, v in self.catalogue.model_inputs.items()}
        self.item_ids = static["cand_ids"]
        with torch.no_grad():
            self.item_vectors = self.model.item_vectors(self.item_ids, static["cand_categories"], static["cand_titles"])
        self.baselines = Baselines(purchases, self.catalogue.ids, cooccurrence_until=start)
        self.neighbours = NeighbourTable(features)
        self.arrivals = ArrivalTable(features)
        self.rules: Rules = load_rules(settings.paths.resolve(settings.serving.rules_path))
        self.limit = settings.serving.candidates
        self.repeat_limit = settings.serving.repeat_candidates
        self.bought = Bought(features, self.catalogue.index)
        self.proposed: Counter[str] = Counter()  # items each source proposed over the whole replay

    @torch.no_grad()
    def ranker_scores(self, rows: pl.DataFrame, items: WeekItems, own: np.ndarray) -> np.ndarray:
        """[len(rows), catalogue] ranker scores; the catalogue's side of the model runs once for all rows.

        `own` [len(rows), catalogue, personal_dim]: what each user's purchases say of each item (`batch.personal`).
        """
        model = self.model
        users = {k: torch.from_numpy(v) for k, v in user_arrays(rows, self.vocab, model.config.history_length).items()}
        cand, q = model.candidates(self.item_vectors, torch.from_numpy(items.dense))
        ids = self.item_ids
        out = np.empty((rows.height, len(ids)), dtype=np.float32)
        step = max(1, PAIRS_PER_CHUNK // len(ids))
        for start in range(0, rows.height, step):
            chunk = {k: v[start : start + step] for k, v in users.items()}
            history, ages = chunk["history_ids"], chunk[s.HISTORY_AGE_HOURS]
            encoded, pad, ctx = model.encode(history, ages, chunk["context"], chunk["region"])
            mine = torch.from_numpy(own[start : start + step])
            scores = model.score_candidates(encoded, pad, ctx, history, ages, ids, cand, q, mine)
            out[start : start + len(scores)] = scores.numpy()
        return out

    def scores(
        self, rows: pl.DataFrame, items: WeekItems, ts: int, region: str, bought: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Each method's scores of the whole catalogue, one row per request; unlisted items at -inf.

        `bought` is `Bought.arrays` for the rows' users at this moment.
        """
        popularity = self.baselines.global_popularity(ts)
        users = rows[s.USER_ID].to_list()
        self.baselines.prepare(ts, users)
        own = personal(*(bought[c] for c in s.USER_ITEM_FEATURES), ts)
        out = {"ranker": self.ranker_scores(rows, items, own)}
        for name in BASELINES:
            out[name] = np.stack([self.baselines.scores(name, u, ts, region, popularity) for u in users])
        return {name: np.where(items.listed, v, -np.inf) for name, v in out.items()}

    def known_candidates(
        self, user: dict, pool: list[str], ts: int, items: WeekItems, region: str
    ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """The service's candidates (catalogue indices of listed items) and the sources of each."""
        proposed = propose(
            pool,
            user.get(s.HISTORY_ITEM_IDS) or [],
            self.neighbours.at(datetime.fromtimestamp(ts, UTC)),
            self.arrivals.at(ts, region),
            self.limit,
            user.get(s.REPEAT_ITEM_IDS) or [],
            self.repeat_limit,
        )
        self.proposed.update(source for sources in proposed.sources for source in sources)
        index = self.catalogue.index
        pairs = [(index.get(i, -1), src) for i, src in zip(proposed.item_ids, proposed.sources, strict=True)]
        pairs = [(i, src) for i, src in pairs if i >= 0 and items.listed[i]]
        return np.array([i for i, _ in pairs], dtype=np.int64), [src for _, src in pairs]

    def served(self, *args, **kwargs) -> list[int]:
        """`served_items` as catalogue indices (same arguments): the top k the service would return.

        A pinned item outside the catalogue takes its place in the list as -1, and can never be a hit.
        """
        return [self.catalogue.index.get(r.item_id, -1) for r in self.served_items(*args, **kwargs)]

    def served_items(
        self,
        scores: np.ndarray,
        cand: np.ndarray,
        sources: list,
        items: WeekItems,
        user: dict,
        at,
        region: str,
        bought: dict[str, np.ndarray],
    ) -> list:
        """The top k the service would return, as the rules return it (each item with its reasons): the
        candidates' scores through the rules. `bought`: this user's row of `Bought.arrays`."""
        c = self.catalogue
        columns = CandidateColumns(
            item_id=[c.ids[i] for i in cand],
            score=scores[cand].tolist(),
            category=[c.category[i] for i in cand],
            stock=[c.stock[i] for i in cand],
            launch_ts=c.launch_ts[cand].tolist(),
            demand_index=_nullable(items.columns[s.ITEM_WEEK_DEMAND][cand]),
            total_demand=_nullable(items.columns[s.TOTAL_DEMAND][cand]),
            demand_level=items.columns[s.DEMAND_LEVEL][cand].tolist(),
            rebuy_share=_nullable(items.columns[s.REBUY_SHARE][cand]),
            trend_ratio=_nullable(items.columns[s.TREND_RATIO][cand]),
            sources=sources,
            buy_days=_nullable(bought[s.ITEM_BUY_DAYS][cand]),
            first_buy_ts=_nullable(bought[s.ITEM_FIRST_BUY_TS][cand]),
            last_buy_ts=_nullable(bought[s.ITEM_LAST_BUY_TS][cand]),
        )
        return rerank(from_columns(columns), self.rules, SERVED_K, at, region, purchases(user))


def with_titles(examples: list[dict], settings) -> list[dict]:
    """Example lists with each item's title and category, for people: an id alone says nothing."""
    try:
        items = scan_table(find_table(settings.paths.canonical, s.ITEMS_TABLE))
        known = {r[0]: r[1:] for r in items.select(s.ITEM_ID, s.TITLE, s.CATEGORY).collect().iter_rows()}
    except (SeasonrecError, OSError, pl.exceptions.PolarsError) as exc:
        log.warning("example lists without titles: %s", exc)
        known = {}
    for example in examples:
        for item in example["items"]:
            item[s.TITLE], item[s.CATEGORY] = known.get(item[s.ITEM_ID], (None, None))
    return examples


def _nullable(values: np.ndarray) -> list[float | None]:
    return [None if v != v else float(v) for v in values]


def _splits(truth: np.ndarray, history: np.ndarray, new: np.ndarray) -> dict[str, np.ndarray]:
    repeat = np.isin(truth, history)
    return {"all": truth, "repeat": truth[repeat], "explore": truth[~repeat], "new_items": truth[new[truth]]}


def _top(scores: np.ndarray, k: int = SERVED_K) -> np.ndarray:
    """The best k indices, ties broken by index as in `metrics.truth_ranks`."""
    head = np.arange(len(scores))
    if len(scores) > k:
        head = np.flatnonzero(scores >= np.partition(scores, len(scores) - k)[len(scores) - k])
    return head[np.lexsort((head, -scores[head]))][:k]


def evaluate(
    settings: Settings,
    checkpoint: Path,
    start: datetime,
    end: datetime,
    out: Path,
    themes: Path | None = None,
    val_weeks: int = 0,
) -> dict:
    """Replay every request with the ranker and each baseline; write metrics.json and report.html.

    With `val_weeks`, the same views also for the weeks before `start` that training held out for
    validation (what the model card records). With `themes` (the synthetic shop's
    `item_themes.parquet`), also the seasonal correctness of the served lists.
    """
    events = scan_table(find_table(settings.paths.canonical, s.EVENTS_TABLE))
    purchases_ = events.filter(pl.col(s.EVENT_TYPE) == "purchase").collect()
    replay = Replay(settings, checkpoint, purchases_, start)
    reqs = user_state(requests(purchases_, start, end), settings.paths.features)
    rows = replay_requests(replay, reqs, start)
    metrics = summarise(rows, replay.limit)
    metrics["data"]["empty_sources"] = silent_sources(replay.proposed)
    if val_weeks:
        val_start = start - timedelta(weeks=val_weeks)
        held_out = Replay(settings, checkpoint, purchases_, val_start)
        val_reqs = user_state(requests(purchases_, val_start, start), settings.paths.features)
        validation = summarise(replay_requests(held_out, val_reqs, val_start), held_out.limit)
        metrics["validation"] = {k: validation[k] for k in ("views", "repeat_share@10", "data")}
        metrics["validation"]["data"].update({"start": val_start.isoformat(), "end": start.isoformat()})
    if themes is not None:
        from seasonrec.model.seasonality import load_themes, seasonal_correctness

        examples: list[dict] = []
        metrics["seasonality"] = seasonal_correctness(replay, load_themes(themes), start.year, examples=examples)
        metrics["examples"] = with_titles(examples, settings)
    return write(metrics, out, checkpoint, reqs, start, end)


def replay_requests(replay: Replay, reqs: pl.DataFrame, start: datetime) -> list[dict]:
    """One metrics row per (request, view, method or source, split)."""
    catalogue = replay.catalogue
    new = catalogue.launch_ts >= start.timestamp()  # launched inside the test window: cold start
    out: list[dict] = []
    groups = reqs.partition_by("at", s.REGION, maintain_order=True)
    for group in progress(groups, description="evaluating (week x region)", total=len(groups)):
        at, region = group["at"][0], group[s.REGION][0]
        ts = int(at.timestamp())
        items = catalogue.week(at, region)
        pool = catalogue.pool(at, region)
        owned = replay.bought.arrays(group[s.USER_ID].to_list(), at)
        scores = replay.scores(group, items, ts, region, owned)
        for i, user in enumerate(group.iter_rows(named=True)):
            own = {k: v[i] for k, v in owned.items()}
            truth = catalogue.indices(user["truth"])
            if len(truth) == 0:
                continue
            bought = replay.baselines.history(user[s.USER_ID], ts)
            splits = {k: v for k, v in _splits(truth, bought, new).items() if len(v)}
            cand, sources = replay.known_candidates(user, pool, ts, items, region)
            base = {"week": at.date().isoformat()}
            for source in (*s.CANDIDATE_SOURCES, UNION):
                mine = cand[[source == UNION or source in src for src in sources]] if len(cand) else cand
                for split, t in splits.items():
                    row = {"view": "retrieval", "method": source, "split": split, "recall": recall(mine, t)}
                    out.append(base | row)
            for method in METHODS:
                row = scores[method][i]
                served = replay.served(row, cand, sources, items, user, at, region, own) if len(cand) else []
                for view, top, measure in (
                    ("catalogue", _top(row), partial(rank_metrics, row)),
                    ("served", served, partial(list_metrics, served)),
                ):
                    share = {"repeat_share@10": float(np.isin(top, bought).mean()) if len(top) else 0.0}
                    for split, t in splits.items():
                        metrics = {"view": view, "method": method, "split": split, **measure(t)}
                        out.append(base | metrics | (share if split == "all" else {}))
    return out


def silent_sources(proposed: Counter[str]) -> list[str]:
    """The candidate sources that proposed nothing, each said plainly; none at all is an error."""
    silent = [source for source in s.CANDIDATE_SOURCES if not proposed[source]]
    if len(silent) == len(s.CANDIDATE_SOURCES):
        raise SeasonrecError("no candidate source proposed any item: are the seasonal pools empty? (`features build`)")
    for source in silent:
        log.warning("candidate source %r proposed nothing in the test window: its recall is 0", source)
    return silent


def summarise(rows: list[dict], limit: int) -> dict:
    """Means per view, split and method (or source), per test week, and the top-10 repeat shares."""
    if not rows:
        raise SeasonrecError("no test request bought an item of the catalogue: nothing to evaluate")
    frame = pl.DataFrame(rows, infer_schema_length=None)
    names = {"catalogue": METRICS, "served": LIST_METRICS, "retrieval": ("recall",)}
    views: dict = {}
    for (view, split), f in frame.group_by("view", "split", maintain_order=True):
        views.setdefault(view, {})[split] = {
            method: {**mean_metrics(g.to_dicts(), names[view]), "requests": g.height}
            for (method,), g in f.group_by("method", maintain_order=True)
        }
    everything = frame.filter(pl.col("split") == "all")
    shares = {
        view: {m: float(g["repeat_share@10"].mean()) for (m,), g in f.group_by("method", maintain_order=True)}
        for (view,), f in everything.filter(pl.col("view") != "retrieval").group_by("view", maintain_order=True)
    }
    weekly = everything.filter(pl.col("view") == "catalogue")
    weeks = {
        week: {m: mean_metrics(g.to_dicts()) for (m,), g in wf.group_by("method", maintain_order=True)}
        for (week,), wf in weekly.group_by("week", maintain_order=True)
    }
    catalogue = dict(views["catalogue"]["all"])
    ranker = {m: v for m, v in catalogue.pop("ranker").items() if m in METRICS}
    requests_ = views["catalogue"]["all"]["ranker"]["requests"]
    repeat = views["catalogue"].get("repeat", {}).get("ranker", {}).get("requests", 0)
    return {
        # The catalogue view, as before: what `seasonrec export` puts on the model card.
        "ranker": ranker,
        "baselines": {m: {k: v[k] for k in METRICS} for m, v in catalogue.items()},
        "views": views,
        "repeat_share@10": shares,
        "slices": {"week": dict(sorted(weeks.items()))},
        "data": {"requests": requests_, "requests_with_repeats": repeat, "candidates": limit},
    }


def write(metrics: dict, out: Path, checkpoint: Path, reqs: pl.DataFrame, start: datetime, end: datetime) -> dict:
    metrics["data"].update(
        {
            "test_start": start.isoformat(),
            "test_end": end.isoformat(),
            "users": int(reqs[s.USER_ID].n_unique()),
            "checkpoint": str(checkpoint),
        }
    )
    if not metrics["data"]["requests_with_repeats"]:
        # Said plainly: a log where nobody buys an item twice has explore items only.
        log.warning("no test purchase repeats an earlier one: the repeat split is empty, explore metrics only")
        metrics["data"]["note"] = "no repeat purchases in the test window: explore metrics only"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from seasonrec.model.report import markdown_summary, write_report

    write_report(metrics, checkpoint, out)
    (out / "summary.md").write_text(markdown_summary(metrics))
    return metrics
