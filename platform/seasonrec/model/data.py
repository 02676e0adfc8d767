"""Training groups: one purchase and its sampled negatives, as arrays the ranker takes.

A group is the unit that must never be split: the ranker learns to put the
purchased item above the others of the same group (a softmax over the group).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.errors import SeasonrecError
from seasonrec.features.training_set import GROUP, LABEL, LOG_Q
from seasonrec.model.batch import Vocab, item_arrays, user_arrays

Arrays = dict[str, np.ndarray]


def load_groups(
    training_set: Path, vocab: Vocab, history_length: int, max_groups: int | None = None
) -> tuple[Arrays, np.ndarray]:
    """(arrays with a leading group axis, the request time of each group in Unix seconds).

    Candidates are ordered positive first, so the target of every group is index 0. There are no title
    embeddings: the model holds the catalogue's. `max_groups` reads only the first groups of the file.
    """
    if not Path(training_set).is_file():
        raise SeasonrecError(f"{training_set}: training set not found; run `seasonrec features training-set` first")
    # Older training sets still store a title per row; at 384 floats a row it is most of their size.
    scan = pl.scan_parquet(training_set).select(pl.exclude(s.TITLE_EMBEDDING))
    if max_groups:
        scan = scan.join(scan.select(pl.col(GROUP).unique(maintain_order=True).head(max_groups)), on=GROUP, how="semi")
    rows = scan.collect().sort(GROUP, LABEL, descending=[False, True], maintain_order=True)
    if rows.is_empty():
        raise SeasonrecError(f"{training_set}: the training set is empty")
    sizes = rows.group_by(GROUP).len()["len"]
    if sizes.n_unique() != 1:
        raise SeasonrecError(f"{training_set}: groups have different sizes; rebuild the training set")
    per_group = int(sizes[0])
    heads = rows.filter(pl.col(LABEL) == 1)
    if heads.height * per_group != rows.height:
        raise SeasonrecError(f"{training_set}: every group needs exactly one purchase")
    users = user_arrays(heads, vocab, history_length)
    candidates = item_arrays(rows, vocab, title_dim=0)
    if LOG_Q in rows.columns:  # older training sets have none: uniform negatives need no correction
        candidates[LOG_Q] = rows[LOG_Q].to_numpy().astype(np.float32)
    items = {k: v.reshape(heads.height, per_group, *v.shape[1:]) for k, v in candidates.items()}
    return {**users, **items}, heads[s.REQUEST_TS].to_numpy()


def split_by_time(arrays: Arrays, times: np.ndarray, val_weeks: int) -> tuple[Arrays, Arrays]:
    """The last `val_weeks` weeks are for validation; everything before, for training."""
    cutoff = times.max() - val_weeks * 7 * 86_400
    train, val = times < cutoff, times >= cutoff
    if not train.any() or not val.any():
        raise SeasonrecError(f"cannot split {len(times)} groups into training and {val_weeks} validation weeks")
    return {k: v[train] for k, v in arrays.items()}, {k: v[val] for k, v in arrays.items()}
