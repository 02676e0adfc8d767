"""TensorRT plans: built on the GPU node that runs them, from one command line.

A plan belongs to one GPU model and TensorRT version, so it is built where it
runs. The `trtexec` command line lives here only: `seasonrec export` writes it
into each version as `build_plan.sh`, which runs it with `--tensorrt` when it
can, and the Helm chart's init container runs that same file on the GPU node.
"""

from __future__ import annotations

import importlib.util
import logging
import shlex
import shutil
import subprocess
from pathlib import Path

from seasonrec import schema as s
from seasonrec.errors import SeasonrecError

log = logging.getLogger(__name__)

PLAN_FILE = "model.plan"
BUILD_SCRIPT = "build_plan.sh"
# Optimisation profile: one request with 1 to 1,000 candidates, tuned for 200.
CANDIDATES_MIN, CANDIDATES_OPT, CANDIDATES_MAX = 1, 200, 1_000
BATCH_MIN, BATCH_OPT, BATCH_MAX = 1, 1, 8


def _shapes(dims: dict[str, int], batch: int, candidates: int, new: int) -> str:
    per_input = {
        "history_ids": (batch, dims["history"]),
        s.HISTORY_AGE_HOURS: (batch, dims["history"]),
        "context": (batch, dims["context"]),
        "region": (batch,),
        "cand_ids": (batch, candidates),
        "cand_dense": (batch, candidates, dims["item_dense"]),
        "cand_personal": (batch, candidates, dims["personal"]),
        # New launches are few: one row (the zero row of a request without any) up to every candidate.
        "new_titles": (batch, new, dims["title"]),
        "new_categories": (batch, new),
    }
    assert set(per_input) == set(s.RANKER_INPUTS)
    return ",".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in per_input.items())


def trtexec_command(onnx: str, plan: str, dims: dict[str, int]) -> list[str]:
    """The one `trtexec` line: FP16, with the profile above for every input."""
    return [
        "trtexec",
        f"--onnx={onnx}",
        f"--saveEngine={plan}",
        "--fp16",
        f"--minShapes={_shapes(dims, BATCH_MIN, CANDIDATES_MIN, 1)}",
        f"--optShapes={_shapes(dims, BATCH_OPT, CANDIDATES_OPT, 1)}",
        f"--maxShapes={_shapes(dims, BATCH_MAX, CANDIDATES_MAX, CANDIDATES_MAX)}",
    ]


def build_script(dims: dict[str, int]) -> str:
    """`build_plan.sh` for one version directory; paths are relative to the script's own folder."""
    command = " ".join(shlex.quote(a) for a in trtexec_command("model.onnx", PLAN_FILE, dims))
    return (
        "#!/bin/sh\n"
        "# Builds the TensorRT plan for this version on the GPU it will run on (written by seasonrec export).\n"
        'set -eu\ncd "$(dirname "$0")"\n'
        f"{command}\n"
    )


def unavailable_reason() -> str | None:
    """Why no plan can be built here, or None when TensorRT and a GPU are present."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if shutil.which("trtexec") is None:
        return "trtexec is not on PATH"
    return None


def build_plan(version_dir: Path) -> None:
    """Run the version's `build_plan.sh` (trtexec, FP16)."""
    proc = subprocess.run(["sh", str(version_dir / BUILD_SCRIPT)], capture_output=True, text=True)
    if proc.returncode != 0 or not (version_dir / PLAN_FILE).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SeasonrecError(f"{version_dir / BUILD_SCRIPT}: trtexec failed: {tail[0]}")
    log.info("built TensorRT plan %s", version_dir / PLAN_FILE)
