"""Export a checkpoint to ONNX as a new version of the ranker in the Triton model repository, as a Ray job.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/export.py --config configs/local.yaml --checkpoint data/checkpoints/ranker \
        [--repository model_repository] [--version N] [--tensorrt]
"""

import argparse
import json
from pathlib import Path

from seasonrec.config import load_settings
from seasonrec.export.export import export_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="settings YAML (default: $SEASONREC_CONFIG or configs/local.yaml)")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--repository", type=Path, help="Triton model repository (default: triton.repository)")
    parser.add_argument("--training-set", type=Path, help="real batches for the parity check")
    parser.add_argument("--version", type=int, help="default: newest + 1")
    parser.add_argument("--tensorrt", action="store_true", help="build a TensorRT plan where TensorRT and a GPU are")
    parser.add_argument("--metrics", type=Path, help="metrics.json for the model card")
    args = parser.parse_args()
    result = export_model(
        load_settings(args.config),
        args.checkpoint,
        args.repository,
        args.training_set,
        args.version,
        args.tensorrt,
        args.metrics,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
