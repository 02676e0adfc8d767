"""The seasonal refresh, end to end, as one Ray job: features, training set, Ray Train, export.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/pipeline.py --config configs/local.yaml [--workers 2] [--gpu] [--init-from CKPT]
"""

import argparse
import json
from pathlib import Path

from seasonrec.config import load_settings
from seasonrec.pipeline import refresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="settings YAML (default: $SEASONREC_CONFIG or configs/local.yaml)")
    parser.add_argument("--workers", type=int, help="Ray Train workers (default: train.workers)")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--init-from", type=Path, help="last season's checkpoint: fine-tune instead of training anew")
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    print(json.dumps(refresh(load_settings(args.config), args.workers, args.gpu, args.init_from, args.epochs)))


if __name__ == "__main__":
    main()
