"""Typed settings: one YAML per environment, overridable from the environment.

`SEASONREC__FEAST__PROFILE=redis` overrides `feast.profile`; the double
underscore separates levels, so any key of the YAML can be set this way.
Unknown keys are rejected everywhere, so a typo never silently does nothing.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from seasonrec.errors import SeasonrecError

ENV_PREFIX = "SEASONREC__"
# Names the settings YAML when no --config is given (the Helm chart mounts one here).
CONFIG_ENV = "SEASONREC_CONFIG"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "local.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Model):
    ## Root for every generated file; relative paths resolve against the project root.
    data_dir: Path = Path("data")

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def root(self) -> Path:
        return self.resolve(self.data_dir)

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def canonical(self) -> Path:
        return self.root / "canonical"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def feast(self) -> Path:
        return self.root / "feast"


class GenerateConfig(_Model):
    users: int = Field(2_000, gt=0)
    items: int = Field(400, gt=0)
    start: date = date(2023, 1, 1)
    end: date = date(2024, 12, 31)
    seed: int = 7
    # Users per written chunk: bounds memory whatever the total number of users.
    chunk_users: int = Field(50_000, gt=0)


class IngestConfig(_Model):
    # Timestamps outside [oldest, now + future_tolerance_days] are rejected, not clipped.
    oldest: date = date(1995, 1, 1)
    future_tolerance_days: int = Field(1, ge=0)
    # Upper bounds of a plausible row: above them a price or quantity is a typo or an attack, and the row
    # is rejected with a reason of its own (NaN and infinity always are).
    max_price: float = Field(100_000.0, gt=0)
    max_quantity: float = Field(100_000.0, gt=0)


class DemandWeights(_Model):
    """What the week-of-year profiles count as demand: each unit sold, and each view and cart, at these weights.

    A profile says *when* an item is wanted, and a view says that as well as a sale does: a shop that sells an
    item three times a year shows it ten times as often (the synthetic shop: 18,744 views and 1,829 purchases),
    so counting views gives a season to lines that sell too little to have one. A log of purchases alone
    (Online Retail II) gets the same profiles either way. Whole numbers, so the totals stay counts.
    """

    view: int = Field(1, ge=0)
    cart: int = Field(1, ge=0)
    purchase: int = Field(1, ge=0)  # per unit


class FeaturesConfig(_Model):
    history_length: int = Field(20, gt=0)
    pool_size: int = Field(100, gt=0)
    # Hub id or local path of a sentence encoder, or "hashing" for the dependency-free fallback.
    title_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_dim: int = Field(384, gt=0)
    # Weights of last year's same weeks against the last four weeks in the candidate pools.
    pool_seasonal_weight: float = Field(2.0, ge=0)
    pool_recent_weight: float = Field(1.0, ge=0)
    # The repeat candidates: a user's bought items kept per snapshot, and the half-life of a purchase's
    # weight in days (a purchase this many days old counts half as much as one today).
    repeat_size: int = Field(150, gt=0)
    repeat_half_life_days: float = Field(90.0, gt=0)
    # The item neighbour table is recomputed every this many weeks of the log (a row only where it changed).
    neighbours_every_weeks: int = Field(4, gt=0)
    demand_weights: DemandWeights = DemandWeights()


class FeastConfig(_Model):
    profile: Literal["embedded", "redis"] = "embedded"
    repo_path: Path = Path("feature_repo")
    redis_connection: str = "127.0.0.1:6379"
    # Redis AUTH password: from the environment (SEASONREC__FEAST__REDIS_PASSWORD, a Kubernetes Secret in the
    # chart), never in a settings file; it is added to the connection only when the store is opened.
    redis_password: SecretStr | None = None
    # Feast namespaces every key by project, so tests and environments can share one Redis.
    project: str = "seasonrec"
    # A feature_store.yaml to use instead of the profile's file in repo_path (the chart mounts one).
    store_yaml: Path | None = None
    # How long an online value stays valid before Feast treats it as missing.
    ttl_days: int = Field(400, gt=0)


class TrainConfig(_Model):
    # Purchases sampled into the training set (0: all) and negatives drawn for each.
    # The cap holds every purchase of a log the size of Online Retail II 2009-2010 (241,027 before its test
    # window: 26 min and 9.1 GiB on 2 cores, NDCG@10 of the served list +9% on the validation weeks against
    # 40,000, docs/benchmarks.md); a larger log is sampled down to it, which bounds memory.
    max_groups: int = Field(250_000, ge=0)
    negatives: int = Field(7, gt=0)
    # Of those, at most this many are items the buyer had bought before: which of their usual items comes next.
    history_negatives: int = Field(3, ge=0)
    # ... but only for a buyer who had bought at least this many distinct items; others get catalogue items only. A
    # buyer's one or two items, drawn as a negative in nearly every group, were ranked too low: without them both
    # synthetic shops gained 3 to 10% NDCG@10 on their validation weeks, and Online Retail II, whose repeat buyers
    # mostly hold more, is unchanged (docs/benchmarks.md).
    history_min_pool: int = Field(10, ge=1)
    epochs: int = Field(8, gt=0)
    batch_size: int = Field(256, gt=0)
    lr: float = Field(2e-3, gt=0)
    # AdamW's decoupled weight decay, and the rate at which candidate ids are hidden in training (so the model also
    # learns to rank by features alone, as it must for an item it has never seen). On the synthetic shop's
    # validation weeks, weight decay up to 0.1 changed nothing and id dropout 0.3 or 0.5 lowered the served
    # list's NDCG@10 (docs/benchmarks.md).
    weight_decay: float = Field(1e-4, ge=0)
    id_dropout: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(2, gt=0)
    # An epoch is at least this many steps, passing over a small shop's groups again: at one pass of 5 steps an
    # epoch, the synthetic shop's validation loss was still falling fast when its 8 epochs ran out. Chosen on its
    # validation weeks (docs/benchmarks.md): 100 against 0, 25 and 50. A log whose pass is longer (Online Retail
    # II's) is unaffected. DP-SGD keeps one Poisson-sampled pass an epoch, which its privacy accounting counts.
    min_epoch_steps: int = Field(100, ge=0)
    val_weeks: int = Field(4, gt=0)
    # Ray Train workers; 0 trains in-process on one device, without Ray.
    workers: int = Field(2, ge=0)
    seed: int = 0
    # DP-SGD (`seasonrec train --dp-epsilon E`): δ of the (ε, δ) guarantee, null for 1 / the number of training
    # groups; and the bound each group's gradient is clipped to, which the noise is scaled to.
    dp_delta: float | None = Field(None, gt=0, lt=1)
    dp_max_grad_norm: float = Field(1.0, gt=0)


class TritonConfig(_Model):
    # Where the scorer finds Triton; the embedded server binds these ports on `host`.
    host: str = "127.0.0.1"
    http_port: int = Field(8000, gt=0, lt=65536)
    grpc_port: int = Field(8001, gt=0, lt=65536)
    metrics_port: int = Field(8002, gt=0, lt=65536)
    model: str = "ranker"
    repository: Path = Path("model_repository")
    # A scoring call slower than this falls back to seasonal popularity.
    timeout_ms: int = Field(200, gt=0)
    # tritonserver to run; empty: the one inside the nvidia-pytriton wheel.
    binary: str = ""
    # Python for the Python backend's stub: numpy 1.x and onnxruntime (`make install` creates it).
    python_env: Path = Path(".venv/triton-python")
    # Seconds to wait for the server and its model to become ready.
    start_timeout_s: int = Field(120, gt=0)


class ServingConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, gt=0, lt=65536)
    # The request path's shape (docs/architecture.md, "Topologies"). fused: fetch, score and re-rank in the
    # Ingress's own process, no hop between replicas (fastest on few cores). graph: each stage its own Serve
    # deployment, each scaled on its own (when one stage needs far more replicas than the others).
    topology: Literal["fused", "graph"] = "fused"
    # One deadline for a whole recommendation. Each stage gives up what it cannot finish in time, and an
    # answer not ready by then is the seasonal fallback (`degraded`), never an error. Serve's own
    # request_timeout_s is set a little above it, so this answer comes first.
    deadline_ms: int = Field(1_000, gt=0, le=60_000)
    rules_path: Path = Path("configs/rules.yaml")
    # Most candidates a request may send; more is a 422, not a slow request.
    max_candidates: int = Field(1_000, gt=0)
    # Items the candidate stage proposes for one request (the union of its sources).
    candidates: int = Field(200, gt=0)
    # Of those, at most this many come first from the user's own purchase history: for a shop where people
    # re-buy, those are the likeliest items by far; the other sources take turns for the rest.
    repeat_candidates: int = Field(100, ge=0)
    # Item profiles change only when materialized: keep this many in memory, this long.
    item_cache_size: int = Field(50_000, gt=0)
    item_cache_ttl_s: float = Field(300.0, gt=0)
    # Largest request body; a longer one is a 413, refused from Content-Length before it is read.
    max_body_bytes: int = Field(256 * 1024, gt=0)
    # A request's or event's `at` must lie in [now - at_past_days, now + at_future_s]: outside it is a 422.
    at_past_days: int = Field(3_650, gt=0)
    at_future_s: float = Field(300.0, ge=0)
    # Events for users the online store has never seen (new customers) per minute, per FeatureFetcher replica.
    new_user_events_per_minute: int = Field(600, ge=0)


class AuthConfig(_Model):
    # The bearer token every write (POST /v1/events, DELETE ...) must carry, compared in constant time.
    # Set it from the environment (SEASONREC__AUTH__WRITE_TOKEN; the chart reads a Kubernetes Secret), never
    # in a file in the repository. Unset: writes are refused (`seasonrec serve start` makes one for its stack).
    write_token: SecretStr | None = None
    # Require the same token on reads (recommendations) too.
    protect_reads: bool = False


class PrivacyConfig(_Model):
    # Replace every user id with a keyed hash (HMAC-SHA256, cut and encoded) at ingest: no raw customer id
    # reaches the canonical tables, the features, Feast, the training set, the model or the logs. The API
    # maps a caller's raw id with the same key, so callers do not change.
    pseudonymize: bool = False
    # The HMAC key: SEASONREC__PRIVACY__KEY or a Kubernetes Secret, never a file in the repository. Rotating
    # it means re-ingesting (docs/operations.md, "Privacy").
    key: SecretStr | None = None
    # Events older than this many days (before now) are dropped at ingest and at feature build, and
    # counted under their own reason. Unset: kept.
    retention_days: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _key_when_pseudonymizing(self) -> PrivacyConfig:
        if self.pseudonymize and (self.key is None or not self.key.get_secret_value()):
            raise ValueError("a key is required when pseudonymize is true (set SEASONREC__PRIVACY__KEY)")
        return self


class Settings(_Model):
    paths: PathsConfig = PathsConfig()
    generate: GenerateConfig = GenerateConfig()
    ingest: IngestConfig = IngestConfig()
    features: FeaturesConfig = FeaturesConfig()
    feast: FeastConfig = FeastConfig()
    train: TrainConfig = TrainConfig()
    triton: TritonConfig = TritonConfig()
    serving: ServingConfig = ServingConfig()
    auth: AuthConfig = AuthConfig()
    privacy: PrivacyConfig = PrivacyConfig()


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        *parents, leaf = key[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(path: Path | str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read a YAML config and apply `SEASONREC__*` overrides.

    Without a path: `$SEASONREC_CONFIG`, else `configs/local.yaml`.
    """
    env = dict(os.environ if environ is None else environ)
    path = Path(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG)
    if not path.is_file():
        raise SeasonrecError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SeasonrecError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict):
        raise SeasonrecError(f"{path}: top level must be a mapping")
    merged = _merge(raw, _env_overrides(env))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        variable = ENV_PREFIX + "__".join(str(p) for p in first["loc"]).upper()
        source = f"environment variable {variable}" if variable in env else str(path)
        message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own words
        raise SeasonrecError(f"{source}: {where}: {message}") from exc
