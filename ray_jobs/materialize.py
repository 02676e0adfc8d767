"""Load the latest feature values into the online store, as a Ray job.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/materialize.py --config configs/local.yaml [--end 2024-12-01T00:00:00]
"""

import argparse
import json
from datetime import UTC, datetime

from seasonrec.config import load_settings
from seasonrec.features.store import materialize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="settings YAML (default: configs/local.yaml)")
    parser.add_argument("--end", type=datetime.fromisoformat, help="values known up to this time (default: now)")
    args = parser.parse_args()
    end = args.end.replace(tzinfo=args.end.tzinfo or UTC) if args.end else None
    print(json.dumps(materialize(load_settings(args.config), end)))


if __name__ == "__main__":
    main()
