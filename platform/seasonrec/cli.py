"""`seasonrec ...`: one subcommand per pipeline stage.

Results go to stdout as JSON; logs and progress go to stderr. A user error is
printed as one line starting with "error:" and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import ValidationError

from seasonrec.config import Settings, load_settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import terminal_text
from seasonrec.schema import THEMES_FILE

log = logging.getLogger("seasonrec")


class _TerminalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Line breaks stay: a traceback under --debug is several lines on purpose.
        return "\n".join(terminal_text(line) for line in super().format(record).split("\n"))


def _timestamp(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not an ISO timestamp like 2024-12-01T00:00:00") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date like 2024-12-01") from exc


def _print(result: object) -> None:
    print(json.dumps(result, indent=2, default=str))


def _stage(args: argparse.Namespace) -> str:
    return " ".join(x for x in (args.group, getattr(args, "command", None)) if x)


def _report(args: argparse.Namespace, settings: Settings, result: object, view=None) -> None:
    """The result: whole as JSON on stdout with `--json`; else a short view, the JSON kept in a file."""
    if args.json:
        _print(result)
        return
    from rich.console import Console
    from rich.text import Text

    from seasonrec.summary import summary_line

    out = settings.paths.root / "runs" / f"{_stage(args).replace(' ', '-')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    # Off a terminal (CI, a pipe) 120 columns: tables of several columns without a wrap in every cell.
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    if view is None:
        # One line, wrapped by the terminal, not by us: a path cut in two cannot be pasted.
        line = summary_line(result, _stage(args)).append(f" (all of it: {terminal_text(str(out))})")
        console.print(line, soft_wrap=True)
    else:
        # Text tables are as wide as they need: wrapping them would scramble their columns.
        console.print(view, soft_wrap=isinstance(view, str | Text), highlight=False)
        console.print(f"all of it: {terminal_text(str(out))}", highlight=False, soft_wrap=True)


# --- data -------------------------------------------------------------------
def _data_ingest(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.data.ingest import ingest

    out = args.out or settings.paths.canonical
    _report(args, settings, ingest(args.source, args.input, out, settings.ingest, settings.privacy))


def _data_generate(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.data.generate import generate

    overrides = {
        k: getattr(args, k) for k in ("users", "items", "start", "end", "seed") if getattr(args, k) is not None
    }
    try:
        cfg = settings.generate.model_validate({**settings.generate.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SeasonrecError(f"--{first['loc'][0]}: {first['msg']}") from exc
    _report(args, settings, generate(args.out or settings.paths.raw, cfg))


# --- features -----------------------------------------------------------------
def _features_build(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.features.build_features import build_features

    data, out = args.data or settings.paths.canonical, args.out or settings.paths.features
    _report(args, settings, build_features(data, out, settings.features, settings.privacy))


def _features_apply(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.features.store import apply

    _report(args, settings, apply(settings))


def _features_materialize(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.features.store import materialize

    _report(args, settings, materialize(settings, args.end))


def _features_online(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec import schema as s
    from seasonrec.features.store import candidate_pool, online_features, open_store, sample_users

    if not args.user and not args.sample:
        raise SeasonrecError("features online: give --user U or --sample N")
    store = open_store(settings)
    if not store.list_feature_views():
        raise SeasonrecError("no feature views registered; run `seasonrec features apply` and `materialize` first")
    results = []
    from seasonrec.privacy.pseudonyms import Pseudonyms

    # --user is the shop's own id, as the API takes it; --sample reads ids as stored.
    asked = [Pseudonyms(settings.privacy).of(args.user)] if args.user else sample_users(settings, args.sample)
    for user in asked:
        items = [i for i in args.items.split(",") if i] if args.items else None
        if items is None and args.items_from_pool:
            home = online_features(settings, user, store=store)["user"].get(s.HOME_REGION)
            items = candidate_pool(settings, args.region or home or s.POOL_ALL_REGIONS, args.at, store)[
                : args.items_from_pool
            ]
        result = online_features(settings, user, items, args.region, args.at, store=store)
        if not args.with_embeddings:
            for row in result.get("items", []):
                vector = row.pop(s.TITLE_EMBEDDING, None)
                row[f"{s.TITLE_EMBEDDING}_dim"] = len(vector) if vector else 0
        results.append(result)
    from seasonrec.summary import online_view

    _report(args, settings, results[0] if args.user else results, view=online_view(results))


def _features_training_set(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.features.training_set import build_training_set

    history = settings.train.history_negatives if args.history_negatives is None else args.history_negatives
    _report(
        args,
        settings,
        build_training_set(settings, args.out, args.start, args.end, args.negatives, args.seed, args.limit, history),
    )


# --- model --------------------------------------------------------------------
def _train(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.model.protocol import train_from_settings

    result = train_from_settings(
        settings, args.training_set, args.out, args.workers, args.gpu, args.init_from, args.epochs, args.dp_epsilon
    )
    _report(args, settings, result)


def _evaluate(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.model.evaluate import evaluate
    from seasonrec.model.protocol import Protocol, run_protocol

    if args.dataset:
        if not args.input:
            raise SeasonrecError("evaluate --dataset needs --input PATH")
        defaults = Protocol()
        protocol = Protocol(
            args.dataset,
            args.test_start or defaults.test_start,
            args.test_end or defaults.test_end,
            args.val_weeks,
            args.seed,
        )
        metrics = run_protocol(settings, protocol, args.input, args.out, themes=args.themes)
    else:
        if not args.checkpoint or not args.test_start or not args.test_end:
            raise SeasonrecError("evaluate needs --checkpoint, --test-start and --test-end (or --dataset and --input)")
        start = datetime.combine(args.test_start, datetime.min.time(), tzinfo=UTC)
        end = datetime.combine(args.test_end, datetime.max.time(), tzinfo=UTC)
        themes = args.themes
        if themes is None and (settings.paths.raw / THEMES_FILE).is_file():
            themes = settings.paths.raw / THEMES_FILE  # the synthetic shop's ground truth, when it is there
        metrics = evaluate(settings, args.checkpoint, start, end, args.out, themes=themes, val_weeks=args.val_weeks)
    from seasonrec.model.report import metrics_table

    result = {"views": metrics["views"], "data": metrics["data"], "report": str(args.out / "report.html")}
    view = f"{metrics_table(metrics)}\nreport: {terminal_text(result['report'])}"
    _report(args, settings, result, view=view)


# --- export and Triton --------------------------------------------------------
def _export(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.export.export import export_model

    _report(
        args,
        settings,
        export_model(
            settings, args.checkpoint, args.repository, args.training_set, args.version, args.tensorrt, args.metrics
        ),
    )


def _triton(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.triton.server import TritonServer

    server = TritonServer(settings)
    if args.command == "start":
        _report(args, settings, server.start(load=not args.no_load))
    elif args.command == "stop":
        _report(args, settings, {"stopped": server.stop()})
    elif args.command == "status":
        _report(args, settings, server.status())
    elif args.command == "swap":
        _report(args, settings, server.swap(args.to))


# --- serving ------------------------------------------------------------------
def _serve(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.serving.stack import ServeStack

    stack = ServeStack(settings)
    if args.command == "start":
        from seasonrec.summary import summary_line

        state = stack.start()
        shown = {"url": state["url"], "docs": f"{state['url']}/docs", "write token": state["write_token_file"]}
        _report(args, settings, state, view=summary_line(shown, "serve start"))
    elif args.command == "stop":
        _report(args, settings, {"stopped": stack.stop()})
    else:
        _report(args, settings, stack.status())


def _recommend(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.serving.demo import show_recommendations

    show_recommendations(settings, args.users, args.at, args.region, args.k)


# --- privacy ------------------------------------------------------------------
def _privacy_forget(args: argparse.Namespace, settings: Settings) -> None:
    from seasonrec.privacy.erasure import forget, who_cli

    _report(args, settings, forget(settings, args.user, who_cli()))


# --- bench --------------------------------------------------------------------
def _bench(args: argparse.Namespace, settings: Settings) -> None:
    from rich.table import Table

    from seasonrec import bench
    from seasonrec.progress import shown

    result = bench.run(args.what, settings, args)
    table = Table(title=shown(result["title"]), title_justify="left")
    columns = list(dict.fromkeys(key for row in result["rows"] for key in row))
    for column in columns:
        table.add_column(shown(column))
    for row in result["rows"]:
        table.add_row(*(shown(str(row.get(column, ""))) for column in columns))
    _report(args, settings, result, view=table)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seasonrec", description="Seasonal product recommendations.")
    parser.add_argument("--config", type=Path, help="settings YAML (default: configs/local.yaml)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="other libraries' lines below WARNING too (Feast, Ray, onnxscript)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--json", action="store_true", help="print the whole result as JSON on stdout (default: a short summary)"
    )
    groups = parser.add_subparsers(dest="group", required=True)

    data = groups.add_parser("data", help="ingest or generate event data").add_subparsers(dest="command", required=True)
    p = data.add_parser("ingest", help="validate a source log into canonical events and items")
    p.add_argument("--source", required=True, choices=["canonical", "online-retail"])
    p.add_argument("--input", required=True, type=Path, help="file or folder to read")
    p.add_argument("--out", type=Path, help="output folder (default: <data_dir>/canonical)")
    p.set_defaults(run=_data_ingest)
    p = data.add_parser("generate", help="write a seeded synthetic seasonal shop")
    p.add_argument("--out", type=Path, help="output folder (default: <data_dir>/raw)")
    p.add_argument("--users", type=int)
    p.add_argument("--items", type=int)
    p.add_argument("--start", type=_day)
    p.add_argument("--end", type=_day)
    p.add_argument("--seed", type=int)
    p.set_defaults(run=_data_generate)

    feats = groups.add_parser("features", help="build, register and serve features").add_subparsers(
        dest="command", required=True
    )
    p = feats.add_parser("build", help="compute the offline feature tables")
    p.add_argument("--data", type=Path, help="canonical data folder (default: <data_dir>/canonical)")
    p.add_argument("--out", type=Path, help="feature tables folder (default: <data_dir>/features)")
    p.set_defaults(run=_features_build)
    feats.add_parser("apply", help="register feature_repo/ with Feast").set_defaults(run=_features_apply)
    p = feats.add_parser("materialize", help="load the latest features into the online store")
    p.add_argument("--end", type=_timestamp, help="materialize values known up to this time (default: now)")
    p.set_defaults(run=_features_materialize)
    p = feats.add_parser("online", help="print a user's online features, and ranker features for items")
    p.add_argument("--user", help="user id")
    p.add_argument("--sample", type=int, help="instead of --user: the N most active users")
    p.add_argument("--items", help="comma-separated item ids")
    p.add_argument("--items-from-pool", type=int, help="instead of --items: the top K of the user's seasonal pool")
    p.add_argument("--region", help="request region (default: the user's home region)")
    p.add_argument("--at", type=_timestamp, help="request time (default: now)")
    p.add_argument("--with-embeddings", action="store_true", help="include title embeddings in full")
    p.set_defaults(run=_features_online)
    p = feats.add_parser("training-set", help="point-in-time-correct training table")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--start", type=_timestamp)
    p.add_argument("--end", type=_timestamp)
    p.add_argument("--negatives", type=int, default=4, help="sampled negatives per purchase")
    p.add_argument(
        "--history-negatives", type=int, help="of those, most drawn from the buyer's past purchases (default: config)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="sample at most this many purchases")
    p.set_defaults(run=_features_training_set)

    p = groups.add_parser("train", help="train or fine-tune the ranker (Ray Train, or in-process with --workers 0)")
    p.add_argument("--training-set", type=Path, help="Parquet from `features training-set` (default: build one)")
    p.add_argument("--out", type=Path, help="checkpoint folder (default: <data_dir>/checkpoints/ranker)")
    p.add_argument("--workers", type=int, help="Ray Train workers; 0 trains without Ray (default: train.workers)")
    p.add_argument("--gpu", action="store_true", help="bf16 on CUDA: a GPU per worker (nccl), or one with --workers 0")
    p.add_argument("--init-from", type=Path, help="warm-start from this checkpoint (seasonal fine-tuning)")
    p.add_argument("--epochs", type=int)
    p.add_argument(
        "--dp-epsilon",
        type=float,
        metavar="E",
        help="differentially private training (DP-SGD, Opacus) to this ε per purchase; needs --workers 0",
    )
    p.set_defaults(run=_train)

    p = groups.add_parser(
        "evaluate", help="replay a test window: catalogue, retrieval and served views, against the baselines"
    )
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json and report.html")
    p.add_argument("--dataset", choices=["online-retail", "canonical"], help="run the whole protocol on --input")
    p.add_argument("--input", type=Path)
    p.add_argument("--test-start", type=_day)
    p.add_argument("--test-end", type=_day, help="last day of the test window (inclusive)")
    p.add_argument(
        "--val-weeks", type=int, default=4, help="weeks before the test window replayed as validation (0: none)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--themes",
        type=Path,
        help=f"item themes for seasonal correctness (default: <data_dir>/raw/{THEMES_FILE} when it exists)",
    )
    p.set_defaults(run=_evaluate)

    p = groups.add_parser("export", help="checkpoint -> ONNX (parity-checked) -> a new Triton model version")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--repository", type=Path, help="Triton model repository (default: triton.repository)")
    p.add_argument("--training-set", type=Path, help="real batches for the parity check (default: <data_dir>/...)")
    p.add_argument("--version", type=int, help="version number (default: newest + 1); never an existing one")
    p.add_argument("--tensorrt", action="store_true", help="also build a TensorRT FP16 plan where TensorRT runs")
    p.add_argument("--metrics", type=Path, help="metrics.json from `seasonrec evaluate`, for the model card")
    p.set_defaults(run=_export)

    triton = groups.add_parser("triton", help="the embedded Triton server").add_subparsers(
        dest="command", required=True
    )
    p = triton.add_parser("start", help="start tritonserver on triton.* ports and load the ranker")
    p.add_argument("--no-load", action="store_true", help="start with no model loaded")
    p.set_defaults(run=_triton)
    triton.add_parser("stop", help="stop the server this data dir started").set_defaults(run=_triton)
    triton.add_parser("status", help="pid, ports and model states").set_defaults(run=_triton)
    p = triton.add_parser("swap", help="load version N beside the live one, then unload the old (no downtime)")
    p.add_argument("--to", type=int, help="version to serve (default: the newest)")
    p.set_defaults(run=_triton)

    serve = groups.add_parser("serve", help="the embedded serving stack: Feast, Triton, Ray Serve").add_subparsers(
        dest="command", required=True
    )
    serve.add_parser("start", help="start Triton and a Ray head, deploy the app, wait for /readyz").set_defaults(
        run=_serve
    )
    serve.add_parser("stop", help="stop what `serve start` started").set_defaults(run=_serve)
    serve.add_parser("status", help="addresses and readiness").set_defaults(run=_serve)
    p = groups.add_parser("recommend", help="ask the running API for users at several moments and print them")
    p.add_argument("--users", type=int, default=2, help="the N most active users")
    p.add_argument("--at", action="append", type=_timestamp, help="request times (repeatable)")
    p.add_argument("--region", action="append", help="regions to ask for (repeatable)")
    p.add_argument("--k", type=int, default=5)
    p.set_defaults(run=_recommend)

    privacy = groups.add_parser("privacy", help="erase a person's data").add_subparsers(dest="command", required=True)
    p = privacy.add_parser("forget", help="erase a user from the online store, offline tables and results; audited")
    p.add_argument("--user", required=True, help="the shop's own (raw) user id; mapped to its pseudonym if set up")
    p.set_defaults(run=_privacy_forget)

    p = groups.add_parser("bench", help="measure; results are appended to docs/benchmarks.md")
    p.add_argument(
        "what",
        choices=["ingest", "generate", "features", "online", "train", "scoring", "serve", "evaluate", "chaos", "page"],
    )
    p.add_argument("--training-set", type=Path, help="train: the training set to time on; scoring: parity batches")
    p.add_argument("--checkpoint", type=Path, help="scoring: the ranker (default: <data_dir>/checkpoints/ranker)")
    p.add_argument("--candidates", default="10,50,200,1000", help="scoring: candidate counts per request")
    p.add_argument("--ways", default="eager,onnxruntime,triton", help="scoring: which of eager,onnxruntime,triton")
    p.add_argument("--input", type=Path, help="ingest: the Online Retail file")
    p.add_argument("--events", type=int, default=1_000_000, help="features: synthetic events to aim for")
    p.add_argument("--users", type=int, default=1_000_000, help="generate: synthetic users")
    p.add_argument("--items", type=int, default=200, help="online: items per request")
    p.add_argument(
        "--requests", type=int, default=300, help="online, scoring, serve: timed requests per line; chaos: in all"
    )
    p.add_argument(
        "--candidates-per-request", default="200,1000", help="serve: candidates in each request, a comma list"
    )
    p.add_argument(
        "--seconds", type=float, default=120.0, help="serve: time limit per concurrency level; chaos: the run's length"
    )
    p.add_argument(
        "--shape",
        default="20833,179,1500,13",
        help="evaluate: items,regions,users,test weeks of the drawn log (default: the held-out grocer's shape)",
    )
    p.add_argument("--no-record", action="store_true", help="print only; do not touch docs/benchmarks.md")
    p.set_defaults(run=_bench)
    return parser


# Deprecations raised inside a dependency, about its own internals: nothing a seasonrec user can act on.
# Each is silenced at its source module only, so the same warning from our code still shows.
KNOWN_HARMLESS_WARNINGS = (
    # Ray Data's own DataContext defaults read its deprecated `use_push_based_shuffle`, `use_polars`, ...
    (DeprecationWarning, r"ray\.data\.context"),
)


def quiet_known_warnings() -> None:
    for category, module in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", category=category, module=module)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(levelname)s %(name)s: %(message)s"))
    # Other libraries talk at INFO on every call (Feast's registry refreshes, onnxscript's passes, one
    # line per HTTP request): they are heard from WARNING up unless -v or DEBUG asks for everything.
    loud = args.verbose or args.log_level == "DEBUG"
    if not loud:
        # Other libraries' tqdm bars (a model's "Loading weights", Feast's per-view bars) would sit among
        # ours, and write carriage returns into pipes: seasonrec's own progress says the same once.
        os.environ.setdefault("TQDM_DISABLE", "1")
        quiet_known_warnings()
    logging.basicConfig(
        level=args.log_level if loud else max(logging.WARNING, logging.getLevelName(args.log_level)), handlers=[handler]
    )
    logging.getLogger("seasonrec").setLevel(args.log_level)
    try:
        settings = load_settings(args.config)
        args.run(args, settings)
    except SeasonrecError as exc:
        print(f"error: {terminal_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        first = terminal_text(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
