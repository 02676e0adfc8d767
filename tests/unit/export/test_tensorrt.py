"""The trtexec command line: one FP16 profile for 1 to 1,000 candidates, over every schema tensor."""

from __future__ import annotations

from seasonrec import schema as s
from seasonrec.export.tensorrt import build_script, trtexec_command

DIMS = {"history": 20, "context": 8, "title": 384, "item_dense": 6, "personal": 4}


def _shapes(command: list[str], flag: str) -> dict[str, str]:
    value = next(a for a in command if a.startswith(f"--{flag}=")).split("=", 1)[1]
    return dict(part.split(":") for part in value.split(","))


def test_profile_spans_one_to_a_thousand_candidates_for_every_input():
    command = trtexec_command("model.onnx", "model.plan", DIMS)
    assert "--fp16" in command
    low, high = _shapes(command, "minShapes"), _shapes(command, "maxShapes")
    assert set(low) == set(high) == set(s.RANKER_INPUTS)
    assert low["cand_dense"] == "1x1x6" and high["cand_dense"].split("x")[1] == "1000"
    # New launches: one row at least (a request without any sends a zero row), up to every candidate.
    assert low["new_titles"] == "1x1x384" and high["new_titles"] == "8x1000x384"
    assert high["history_ids"].endswith("x20")


def test_the_script_runs_that_same_command_from_its_own_folder():
    script = build_script(DIMS)
    assert 'cd "$(dirname "$0")"' in script
    assert " ".join(trtexec_command("model.onnx", "model.plan", DIMS)) in script
