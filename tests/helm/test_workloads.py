"""What the rendered workloads do: the Serve graph, the training job, Triton, Redis and the config mounts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
import yaml

APP_ENV = {
    "SEASONREC_CONFIG": "/etc/seasonrec/settings.yaml",
    "SEASONREC__PATHS__DATA_DIR": "/var/lib/seasonrec/data",
    "SEASONREC__SERVING__RULES_PATH": "/etc/seasonrec/rules/rules.yaml",
    "SEASONREC__FEAST__PROFILE": "redis",
    "SEASONREC__TRITON__HOST": "rec-seasonrec-triton",
    "SEASONREC__TRITON__GRPC_PORT": "8001",
}


@pytest.fixture(scope="module")
def render(chart):
    return chart.template


def ray_pods(doc: dict) -> list[dict]:
    """Pod templates of a RayService, RayJob or RayCluster."""
    spec = doc["spec"].get("rayClusterConfig") or doc["spec"].get("rayClusterSpec") or doc["spec"]
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def all_ray_pods(chart, docs) -> list[dict]:
    return [pod for kind in chart.ray_kinds for doc in chart.by_kind(docs, kind) for pod in ray_pods(doc)]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _serve_config(chart, docs) -> tuple[dict, dict, dict]:
    """(serveConfigV2, its one application's deployments by name, the settings the app loads)."""
    serve = yaml.safe_load(chart.one(docs, "RayService")["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    assert app["import_path"] == "seasonrec.serving.app:build_app"
    assert app["route_prefix"] == "/"
    assert app["args"] == {"config": "/etc/seasonrec/settings.yaml"}
    settings = yaml.safe_load(chart.one(docs, "ConfigMap", "rec-seasonrec-settings")["data"]["settings.yaml"])
    return serve, {d["name"]: d for d in app["deployments"]}, settings


def test_the_default_topology_is_fused_the_ingress_alone(chart, render):
    serve, deployments, settings = _serve_config(chart, render("--set", "serve.deployments.Ingress.numCpus=1"))
    # No config for a deployment the app does not build: Serve refuses an application that names one.
    assert list(deployments) == ["Ingress"]
    assert deployments["Ingress"]["ray_actor_options"] == {"num_cpus": 1}
    assert settings["serving"]["topology"] == "fused"
    assert serve["http_options"]["port"] == 8000
    # Serve gives up a second after the app's own deadline (1,000 ms by default), so the app answers first.
    assert serve["http_options"]["request_timeout_s"] == 2


def test_the_graph_topology_runs_four_deployments_each_scaled_on_its_own(chart, render):
    docs = render(
        "--set", "serve.topology=graph", "--set", "serve.deployments.Scorer.maxReplicas=9",
        "--set", "settings.serving.deadline_ms=250",
    )  # fmt: skip
    serve, deployments, settings = _serve_config(chart, docs)
    assert list(deployments) == ["Ingress", "FeatureFetcher", "Scorer", "ReRanker"]
    assert deployments["Scorer"]["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 9,
        "target_ongoing_requests": 4,
    }
    assert settings["serving"]["topology"] == "graph" and settings["serving"]["deadline_ms"] == 250
    assert serve["http_options"]["request_timeout_s"] == 1.25


FAST_PATH = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


@pytest.mark.parametrize("fast_path", [True, False])
def test_serve_pods_take_the_fast_request_path_only_when_asked(chart, render, fast_path):
    values = {"serve.fastPath": str(fast_path).lower(), "train.enabled": "true", "rayCluster.enabled": "true"}
    docs = render(*[arg for key, value in values.items() for arg in ("--set", f"{key}={value}")])
    for pod in ray_pods(chart.one(docs, "RayService")):
        env = env_of(pod["spec"]["containers"][0])
        got = {name: env[name]["value"] for name in FAST_PATH if name in env}
        assert got == (FAST_PATH if fast_path else {})
    training = [doc for kind in chart.ray_kinds if kind != "RayService" for doc in chart.by_kind(docs, kind)]
    assert len(training) == 2
    for pod in [pod for doc in training for pod in ray_pods(doc)]:  # training has no request path
        assert not set(FAST_PATH) & set(env_of(pod["spec"]["containers"][0]))


def test_training_job_entrypoint_is_built_from_values(chart, ci_docs):
    job = chart.one(ci_docs, "RayJob", "rec-seasonrec-train-2024w48")["spec"]
    assert job["entrypoint"] == (
        "python ray_jobs/train.py --config /etc/seasonrec/settings.yaml --workers 2 --gpu"
        " --init-from '/var/lib/seasonrec/data/checkpoints/ranker'"
        " --out '/var/lib/seasonrec/data/checkpoints/ranker-2024w48' --epochs 3"
    )
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] == 86400
    assert job["activeDeadlineSeconds"] == 21600
    argv = shlex.split(job["entrypoint"])
    script = chart.repo / argv[1]
    assert script.is_file()
    known = set(re.findall(r'add_argument\("(--[\w-]+)"', script.read_text()))
    assert {a for a in argv if a.startswith("--")} <= known, "the entrypoint passes a flag train.py does not take"


def test_training_job_on_cpu_trains_from_scratch_with_the_settings_epochs(chart, render):
    docs = render("--set", "train.enabled=true", "--set", "train.gpu=false", "--set", "train.workers=3")
    job = chart.one(docs, "RayJob", "rec-seasonrec-train")["spec"]
    assert job["entrypoint"] == "python ray_jobs/train.py --config /etc/seasonrec/settings.yaml --workers 3"
    assert "activeDeadlineSeconds" not in job


def test_every_ray_pod_gets_the_settings_env_config_and_shared_storage(chart, ci_docs):
    pods = all_ray_pods(chart, ci_docs)
    assert len(pods) == 6, "RayService head+workers, RayJob head+GPU, RayCluster head+GPU"
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        env = env_of(container)
        assert {k: env[k]["value"] for k in APP_ENV} == APP_ENV
        assert container["workingDir"] == "/app", "ray start runs here, so `python ray_jobs/...` resolves"
        assert container["image"] == "registry.example.com/ml/seasonrec:0.1.0"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # Training clusters write new versions into Triton's repository (ray_jobs/export.py);
        # Serve pods read each live version's vocabulary from it.
        assert mounts == {"/etc/seasonrec": "config", "/var/lib/seasonrec": "data", "/models": "models", "/tmp": "tmp"}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "rec-seasonrec-data"
        projected = [
            (s["configMap"]["name"], s["configMap"]["items"][0]["path"])
            for s in volumes["config"]["projected"]["sources"]
        ]
        assert projected == [
            ("rec-seasonrec-settings", "settings.yaml"),
            ("rec-seasonrec-rules", "rules/rules.yaml"),
            ("rec-seasonrec-feast", "feast/feature_store.yaml"),
        ]
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_no_volume_is_mounted_with_subpath(ci_docs, chart):
    """A subPath mount never sees ConfigMap updates; rules must reach running ReRankers."""
    pods = all_ray_pods(chart, ci_docs) + [
        d["spec"]["template"] for d in ci_docs if d["kind"] in ("Deployment", "StatefulSet")
    ]
    for pod in pods:
        for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            for mount in container.get("volumeMounts", []):
                assert "subPath" not in mount, f"{container['name']}: {mount}"


def _checksums(chart, docs) -> set[str]:
    return {pod["metadata"]["annotations"]["checksum/settings"] for pod in all_ray_pods(chart, docs)}


def test_settings_changes_restart_ray_pods_and_rules_changes_do_not(chart, render, default_docs):
    before = _checksums(chart, default_docs)
    assert len(before) == 1
    assert _checksums(chart, render("--set", "rules.pins.summer=ITEM-1")) == before
    rules = chart.one(render("--set", "rules.pins.summer=ITEM-1"), "ConfigMap", "rec-seasonrec-rules")
    assert yaml.safe_load(rules["data"]["rules.yaml"]) == {"pins": {"summer": "ITEM-1"}}
    assert _checksums(chart, render("--set", "settings.serving.max_candidates=500")) != before


def test_triton_serves_the_chosen_variant_from_the_pvc(chart, default_docs):
    pod = chart.one(default_docs, "Deployment", "rec-seasonrec-triton")["spec"]["template"]["spec"]
    (triton,) = pod["containers"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert triton["args"] == [
        "tritonserver",
        "--model-repository=/models",
        "--model-control-mode=explicit",
        "--load-model=ranker",
        "--model-config-name=onnxruntime_trt",
        "--http-restricted-api=model-repository,model-config,shared-memory,trace,logging"
        ":seasonrec-model-control-key=$(TRITON_MODEL_CONTROL_KEY)",
        "--grpc-restricted-protocol=model-repository,model-config,shared-memory,trace,logging"
        ":seasonrec-model-control-key=$(TRITON_MODEL_CONTROL_KEY)",
    ]
    variant = chart.repo / "model_repository" / "ranker" / "configs" / "onnxruntime_trt.pbtxt"
    assert variant.is_file(), "--model-config-name names a config the repository does not have"
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in triton["volumeMounts"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "seasonrec-models"
    assert "initContainers" not in pod
    service = chart.one(default_docs, "Service", "rec-seasonrec-triton")["spec"]
    assert [(p["name"], p["port"]) for p in service["ports"]] == [("http", 8000), ("grpc", 8001), ("metrics", 8002)]
    hpa = chart.one(default_docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rec-seasonrec-triton"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)


def test_triton_reads_an_s3_repository_with_credentials_from_a_secret(chart, render):
    docs = render(
        *("--set", "triton.modelRepository.type=s3", "--set", "triton.modelRepository.s3Uri=s3://models/seasonrec"),
        *("--set", "triton.modelRepository.s3Credentials.existingSecret=aws-models"),
        *("--set", "triton.modelRepository.s3Credentials.region=eu-west-1"),
    )
    pod = chart.one(docs, "Deployment")["spec"]["template"]["spec"]
    (triton,) = pod["containers"]
    assert "--model-repository=s3://models/seasonrec" in triton["args"]
    env = env_of(triton)
    for name, key in [("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")]:
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "aws-models", "key": key}}}
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    assert "models" not in {v["name"] for v in pod["volumes"]}


def test_tensorrt_init_container_builds_missing_plans_with_each_versions_script(chart, ci_docs, tmp_path):
    pod = chart.one(ci_docs, "Deployment")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == pod["containers"][0]["image"], "trtexec must match the serving TensorRT"
    assert init["resources"]["limits"]["nvidia.com/gpu"] == 1, "the plan is built on the serving GPU"
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    from seasonrec.export import tensorrt

    dims = {"history": 20, "context": 8, "title": 384, "item_dense": 6, "personal": 3}
    assert "--model-config-name=tensorrt_plan" in pod["containers"][0]["args"]
    # Run the script itself against a fake repository: version 1 has a plan, version 2 needs one.
    repo = tmp_path / "models"
    for version in ("1", "2"):
        (repo / "ranker" / version).mkdir(parents=True)
        (repo / "ranker" / version / "model.onnx").write_text("onnx")
        (repo / "ranker" / version / "build_plan.sh").write_text(tensorrt.build_script(dims))
    (repo / "ranker" / "1" / "model.plan").write_text("old plan")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "trtexec").write_text('#!/bin/sh\necho "$@" > model.plan\n')
    (bin_dir / "trtexec").chmod(0o755)
    shell, flags, script = init["command"]
    proc = subprocess.run(
        [shell, flags, script.replace("/models/", f"{repo}/")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (repo / "ranker" / "1" / "model.plan").read_text() == "old plan"
    assert (repo / "ranker" / "2" / "model.plan").read_text().split() == tensorrt.trtexec_command(
        "model.onnx", "model.plan", dims
    )[1:]
    # A version exported without build_plan.sh cannot get a plan: the pod must not start.
    (repo / "ranker" / "3").mkdir()
    proc = subprocess.run([shell, flags, script.replace("/models/", f"{repo}/")], capture_output=True, text=True)
    assert proc.returncode == 1 and "no model.plan and no build_plan.sh" in proc.stderr


def test_redis_password_comes_only_from_the_referenced_secret(chart, ci_docs):
    redis = chart.one(ci_docs, "StatefulSet", "rec-seasonrec-redis")["spec"]["template"]["spec"]["containers"][0]
    secret = {"secretKeyRef": {"name": "seasonrec-redis", "key": "password"}}
    assert env_of(redis)["REDIS_PASSWORD"]["valueFrom"] == secret
    assert '--requirepass "$REDIS_PASSWORD"' in redis["command"][-1]
    for pod in all_ray_pods(chart, ci_docs):
        env = env_of(pod["spec"]["containers"][0])
        assert env["SEASONREC__FEAST__REDIS_PASSWORD"]["valueFrom"] == secret
        assert env["SEASONREC__FEAST__REDIS_CONNECTION"]["value"] == "rec-seasonrec-redis:6379"
    made = {d["metadata"]["name"] for d in chart.by_kind(ci_docs, "Secret")}
    assert not {"seasonrec-redis", "rec-seasonrec-redis"} & made, "a named Secret is used, never written"


def test_external_redis_replaces_the_bundled_one(chart, render):
    docs = render(
        *("--set", "redis.enabled=false", "--set", "redis.external.host=redis.prod"),
        *("--set", "redis.auth.existingSecret=redis-prod"),
    )
    assert not chart.by_kind(docs, "StatefulSet")
    for pod in all_ray_pods(chart, docs):
        assert env_of(pod["spec"]["containers"][0])["SEASONREC__FEAST__REDIS_CONNECTION"]["value"] == "redis.prod:6379"


def test_shared_storage_is_a_kept_readwritemany_claim_or_an_existing_one(chart, ci_docs, render):
    pvc = chart.one(ci_docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "nfs-client"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    docs = render("--set", "storage.existingClaim=feast-shared")
    assert not chart.by_kind(docs, "PersistentVolumeClaim")
    for pod in all_ray_pods(chart, docs):
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if v["name"] == "data"]
        assert claims == ["feast-shared"]
