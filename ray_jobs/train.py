"""Train or fine-tune the ranker with Ray Train, as a Ray job.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/train.py --config configs/local.yaml --workers 2 [--gpu] [--init-from CKPT] [--epochs E]
"""

import argparse
import json
from pathlib import Path

from seasonrec.config import load_settings
from seasonrec.model.protocol import train_from_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="settings YAML (default: configs/local.yaml)")
    parser.add_argument("--training-set", type=Path, help="Parquet from `seasonrec features training-set`")
    parser.add_argument("--out", type=Path, help="checkpoint folder")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--init-from", type=Path)
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    settings = load_settings(args.config)
    result = train_from_settings(
        settings, args.training_set, args.out, args.workers, args.gpu, args.init_from, args.epochs
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
