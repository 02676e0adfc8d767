"""The Triton model repository: versions that only go up, written whole or not at all.

A version is assembled in a hidden staging folder next to the live ones and
renamed into place in one step, so Triton never sees a half-written version
and a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from seasonrec import schema as s
from seasonrec.config import PROJECT_ROOT
from seasonrec.errors import SeasonrecError

# The committed configs and Python-backend model.py; copied into any other repository.
COMMITTED = PROJECT_ROOT / "model_repository" / s.RANKER_MODEL
BACKEND_FILE = "model.py"
CARD_FILE = "model_card.json"


class ModelRepository:
    def __init__(self, root: Path, model: str = s.RANKER_MODEL):
        self.root = Path(root)
        self.model_dir = self.root / model

    def versions(self) -> list[int]:
        if not self.model_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.model_dir.iterdir() if p.is_dir() and p.name.isdigit())

    def next_version(self, requested: int | None = None) -> int:
        """`requested`, or one past the newest; never a version that exists or is older than the newest."""
        existing = self.versions()
        newest = existing[-1] if existing else 0
        if requested is None:
            return newest + 1
        if requested < 1:
            raise SeasonrecError(f"--version {requested}: versions start at 1")
        if requested in existing:
            raise SeasonrecError(f"{self.model_dir / str(requested)}: version {requested} exists; versions only go up")
        if requested < newest:
            raise SeasonrecError(f"--version {requested}: older than the newest version {newest}; versions only go up")
        return requested

    def ensure_configs(self) -> None:
        """Give a new repository the committed config.pbtxt, configs/ and model.py."""
        self.model_dir.mkdir(parents=True, exist_ok=True)
        if self.model_dir.resolve() == COMMITTED.resolve():
            return
        for source in [COMMITTED / "config.pbtxt", COMMITTED / BACKEND_FILE, *sorted(COMMITTED.glob("configs/*"))]:
            target = self.model_dir / source.relative_to(COMMITTED)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)

    @contextlib.contextmanager
    def staging(self, version: int) -> Iterator[Path]:
        """A folder to fill; on success it becomes `<model>/<version>/` in one rename, on failure it is removed."""
        self.ensure_configs()
        stage = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=self.model_dir))
        try:
            yield stage
            shutil.copy2(COMMITTED / BACKEND_FILE, stage / BACKEND_FILE)
            os.chmod(stage, 0o755)
            target = self.model_dir / str(version)
            try:
                # rename() onto an existing non-empty folder fails: a concurrent export cannot be overwritten.
                os.rename(stage, target)
            except OSError as exc:
                raise SeasonrecError(f"{target}: cannot publish version {version} ({exc.strerror})") from exc
        finally:
            shutil.rmtree(stage, ignore_errors=True)
