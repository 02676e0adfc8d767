"""The chart's settings, Feast profile and Triton variants agree with the code that reads them."""

from __future__ import annotations

import json
import re

import yaml

from seasonrec.config import load_settings


def test_k8s_config_loads(chart):
    settings = load_settings(chart.repo / "configs" / "k8s.yaml", environ={})
    assert settings.feast.profile == "redis"
    assert str(settings.paths.data_dir) == "/var/lib/seasonrec/data"
    assert settings.paths.feast.as_posix() == "/var/lib/seasonrec/data/feast"
    assert str(settings.serving.rules_path) == "/etc/seasonrec/rules/rules.yaml"


def test_chart_settings_mirror_configs_k8s_yaml(chart):
    values = yaml.safe_load((chart.path / "values.yaml").read_text())
    assert values["settings"] == yaml.safe_load((chart.repo / "configs" / "k8s.yaml").read_text())


def test_pods_read_the_mounted_settings_with_their_release_overrides(chart, ci_docs, tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(chart.one(ci_docs, "ConfigMap", "rec-seasonrec-settings")["data"]["settings.yaml"])
    service = chart.one(ci_docs, "RayService")
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    # What the kubelet hands the process: literal values, with $(VAR) expanded from earlier entries,
    # and each Secret reference resolved (here to a stand-in per key).
    secrets = {"password": "from-the-secret", "write-token": "the-write-token", "auth_token": "the-ray-token"}
    environ: dict[str, str] = {}
    for entry in head["env"]:
        if "value" in entry:
            environ[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: environ[m.group(1)], entry["value"])
        elif entry["valueFrom"]["secretKeyRef"]["key"] in secrets:
            environ[entry["name"]] = secrets[entry["valueFrom"]["secretKeyRef"]["key"]]
    assert environ.pop("SEASONREC_CONFIG") == "/etc/seasonrec/settings.yaml"
    settings = load_settings(settings_file, environ=environ)
    # The password reaches seasonrec as its own secret setting, never inside the connection string.
    assert settings.feast.redis_connection == "rec-seasonrec-redis:6379"
    assert settings.feast.redis_password.get_secret_value() == "from-the-secret"
    assert settings.auth.write_token.get_secret_value() == "the-write-token"
    assert settings.triton.host == "rec-seasonrec-triton" and settings.triton.grpc_port == 8001
    assert str(settings.paths.data_dir) == "/var/lib/seasonrec/data"


def test_feast_configmap_is_the_repos_redis_profile(chart, default_docs):
    rendered = chart.one(default_docs, "ConfigMap", "rec-seasonrec-feast")["data"]["feature_store.yaml"]
    profile = chart.repo / "feature_repo" / "feature_store.redis.yaml"
    assert yaml.safe_load(rendered) == yaml.safe_load(profile.read_text())


def test_every_triton_variant_the_schema_allows_exists_in_the_repository(chart):
    schema = json.loads((chart.path / "values.schema.json").read_text())
    variants = schema["properties"]["triton"]["properties"]["configVariant"]["enum"]
    configs = chart.repo / "model_repository" / "ranker" / "configs"
    assert sorted(variants) == sorted(p.stem for p in configs.glob("*.pbtxt"))
