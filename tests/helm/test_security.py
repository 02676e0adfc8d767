"""A locked-down release (issue 14, points 19 to 23): pod security, network policies, Ray token auth,
Triton's model control behind a key, disruption budgets, Redis auth and limits, image digests."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

RAY_COMPONENTS = {"serve-head", "serve-worker", "train-head", "gpu-worker"}
SERVE = {"serve-head", "serve-worker"}
TRAINING = {"train-head", "gpu-worker"}
DIGEST = "sha256:" + "ab" * 32


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def containers(pod: dict) -> list[dict]:
    return pod["spec"].get("initContainers", []) + pod["spec"]["containers"]


def component(pod: dict) -> str:
    return pod["metadata"]["labels"]["app.kubernetes.io/component"]


# --- 19: every pod and container -------------------------------------------------------------


@pytest.mark.parametrize("values", ["default_docs", "ci_docs"])
def test_every_pod_runs_as_a_non_root_user_without_privileges_on_a_read_only_root(chart, values, request):
    docs = request.getfixturevalue(values)
    pods = chart.pods(docs)
    expected = {"serve-head", "serve-worker", "triton", "redis"}
    if values == "ci_docs":
        expected |= TRAINING | {"train-submitter"}
    assert {component(p) for p in pods} == expected
    for pod in pods:
        where = component(pod)
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (where, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (where, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (where, container["name"])
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, (where, container["name"])
            if where != "redis":  # Redis writes /data only
                (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert "emptyDir" in volumes[tmp["name"]], (where, container["name"])
    # KubeRay adds an autoscaler sidecar to the autoscaling heads: it gets the same container context.
    for doc in [d for d in docs if d["kind"] in ("RayService", "RayCluster")]:
        spec = doc["spec"].get("rayClusterConfig") or doc["spec"]
        assert spec["autoscalerOptions"]["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["autoscalerOptions"]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_redis_can_still_write_its_data_volume_as_a_non_root_user(chart, default_docs):
    pod = chart.one(default_docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert {"name": "data", "mountPath": "/data"} in pod["containers"][0]["volumeMounts"]


# --- 20: network policies ----------------------------------------------------------------------


def _matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


class Network:
    """Who may open a port on a pod of the release, read off the rendered NetworkPolicies."""

    def __init__(self, chart, docs):
        self.policies = chart.by_kind(docs, "NetworkPolicy")
        self.pods = {component(p): p["metadata"]["labels"] for p in chart.pods(docs)}

    def selecting(self, target: str) -> list[dict]:
        return [p for p in self.policies if _matches(p["spec"]["podSelector"], self.pods[target])]

    def reach(self, target: str, port: int) -> tuple[set[str], list[dict]]:
        """The release's pods (by component) and the other peers allowed to `target`:`port`."""
        inside, outside = set(), []
        for policy in self.selecting(target):
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            for rule in policy["spec"]["ingress"]:
                if "ports" in rule and port not in [p["port"] for p in rule["ports"]]:
                    continue
                for peer in rule["from"]:
                    if set(peer) == {"podSelector"}:
                        inside |= {c for c, labels in self.pods.items() if _matches(peer["podSelector"], labels)}
                    else:
                        outside.append(peer)
        return inside, outside


@pytest.fixture(scope="module")
def network(chart, ci_docs):
    return Network(chart, ci_docs)


def test_every_pod_of_the_release_is_covered_by_a_policy(network):
    assert all(network.selecting(c) for c in network.pods if c != "train-submitter"), network.pods


def test_only_the_serve_pods_reach_triton_and_redis(network):
    for target, ports in (("triton", (8000, 8001)), ("redis", (6379,))):
        for port in ports:
            assert network.reach(target, port) == (SERVE, []), (target, port)
    assert network.reach("triton", 8002) == (set(), []), "metrics: nobody until networkPolicy.metricsFrom says"


def test_only_the_ingress_controller_reaches_the_serve_http_port(chart, network):
    values = yaml.safe_load((chart.path / "values.yaml").read_text())["networkPolicy"]["ingress"]
    for target in SERVE:
        inside, outside = network.reach(target, 8000)
        assert inside == SERVE, "the Serve cluster's own pods, never training, Triton or Redis"
        assert outside == [{"namespaceSelector": values["namespaceSelector"], "podSelector": values["podSelector"]}]


def test_ray_head_ports_are_for_the_clusters_own_pods_and_the_dashboard_for_kuberay(chart, network):
    operator = yaml.safe_load((chart.path / "values.yaml").read_text())["networkPolicy"]["operator"]
    for head, cluster in (("serve-head", SERVE), ("train-head", TRAINING)):
        for port in (6379, 10001):  # GCS, Ray client
            assert network.reach(head, port) == (cluster, []), (head, port)
        inside, outside = network.reach(head, 8265)
        assert inside == cluster | {"train-submitter"}
        assert outside == [operator], "the KubeRay operator deploys Serve and submits jobs through the dashboard"


def test_dashboard_sources_and_redis_clients_are_configurable(chart):
    runner = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ci"}}}
    docs = chart.template(
        "-f",
        str(chart.ci_values),
        "--set-json",
        f"networkPolicy.dashboardFrom={json.dumps([runner])}",
        "--set",
        "networkPolicy.redisFromTraining=true",
    )
    network = Network(chart, docs)
    assert runner in network.reach("serve-head", 8265)[1]
    assert network.reach("redis", 6379)[0] == SERVE | TRAINING
    assert not chart.by_kind(chart.template("--set", "networkPolicy.enabled=false"), "NetworkPolicy")


# --- 21: Ray token auth, and no script from the shared volume ----------------------------------


def _secret(docs, chart, name: str, key: str) -> str:
    secret = chart.one(docs, "Secret", name)
    return base64.b64decode(secret["data"][key]).decode()


def test_every_ray_cluster_and_container_uses_the_token_from_one_secret(chart, ci_docs):
    ray = [d for d in ci_docs if d["kind"] in chart.ray_kinds]
    assert len(ray) == 3
    for doc in ray:
        spec = doc["spec"].get("rayClusterConfig") or doc["spec"].get("rayClusterSpec") or doc["spec"]
        assert spec["authOptions"] == {"mode": "token", "secretName": "rec-seasonrec-ray-auth"}, doc["kind"]
    ray_pods = [p for p in chart.pods(ci_docs) if component(p) in RAY_COMPONENTS | {"train-submitter"}]
    assert len(ray_pods) == 7
    for pod in ray_pods:
        for container in pod["spec"]["containers"]:
            env = env_of(container)
            assert env["RAY_AUTH_MODE"] == {"name": "RAY_AUTH_MODE", "value": "token"}
            assert env["RAY_AUTH_TOKEN"]["valueFrom"] == {
                "secretKeyRef": {"name": "rec-seasonrec-ray-auth", "key": "auth_token"}
            }
    assert len(_secret(ci_docs, chart, "rec-seasonrec-ray-auth", "auth_token")) >= 32


def test_an_existing_ray_token_secret_replaces_the_generated_one(chart):
    docs = chart.template("--set", "ray.auth.existingSecret=ray-token")
    assert "rec-seasonrec-ray-auth" not in {d["metadata"]["name"] for d in chart.by_kind(docs, "Secret")}
    service = chart.one(docs, "RayService")
    assert service["spec"]["rayClusterConfig"]["authOptions"]["secretName"] == "ray-token"
    for pod in chart.ray_pods(service):
        token = env_of(pod["spec"]["containers"][0])["RAY_AUTH_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"]["name"] == "ray-token"


def test_serve_pods_mount_the_model_repository_read_only(chart, ci_docs):
    writers = set()
    for pod in chart.pods(ci_docs):
        for container in containers(pod):
            for mount in container.get("volumeMounts", []):
                if mount["mountPath"] == "/models" and not mount.get("readOnly", False):
                    writers.add((component(pod), container["name"]))
    # Training clusters export versions and Triton's init container writes plans; nothing else writes.
    assert writers == {("train-head", "ray-head"), ("gpu-worker", "ray-worker"), ("triton", "build-tensorrt-plan")}


@pytest.fixture
def plan_builder(chart, ci_docs, tmp_path):
    """Runs the init container's script on a fake repository with a trtexec that records its arguments."""
    from seasonrec.export import tensorrt

    (init,) = chart.one(ci_docs, "Deployment")["spec"]["template"]["spec"]["initContainers"]
    shell, flags, script = init["command"]
    version = tmp_path / "models" / "ranker" / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_text("onnx")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "trtexec").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > model.plan\n')
    (bin_dir / "trtexec").chmod(0o755)
    dims = {"history": 20, "context": 8, "title": 384, "item_dense": 6, "personal": 3}

    def run(build_plan: str) -> subprocess.CompletedProcess:
        (version / "build_plan.sh").write_text(build_plan)
        return subprocess.run(
            [shell, flags, script.replace("/models/", f"{tmp_path / 'models'}/")],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        )

    return run, version, tensorrt.build_script(dims), tensorrt.trtexec_command("model.onnx", "model.plan", dims)


def test_the_plan_is_built_from_exports_trtexec_line_with_nothing_else_run(plan_builder, tmp_path):
    run, version, script, command = plan_builder
    planted = script + f"touch {tmp_path}/pwned\n"  # a job with write access appends a command
    proc = run(planted)
    assert proc.returncode == 0, proc.stderr
    assert (version / "model.plan").read_text().split("\n")[:-1] == command[1:]
    assert not (tmp_path / "pwned").exists(), "the init container ran a line of build_plan.sh other than trtexec"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda line: line + "; touch pwned",
        lambda line: line.replace("--fp16", "--fp16 $(touch pwned)"),
        lambda line: line.replace("--onnx=model.onnx", "--onnx=/etc/passwd"),
        lambda line: line + "\ntrtexec --onnx=model.onnx",
        lambda line: "sh -c 'touch pwned'",
    ],
    ids=["chained", "substitution", "other-file", "two-lines", "no-trtexec"],
)
def test_a_tampered_build_plan_is_refused_and_never_run(plan_builder, tmp_path, tamper):
    run, version, script, _ = plan_builder
    line = next(x for x in script.splitlines() if x.startswith("trtexec "))
    proc = run(script.replace(line, tamper(line)))
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("not the trtexec line seasonrec export writes; refusing to build")
    assert not (version / "model.plan").exists() and not list(tmp_path.rglob("pwned"))


# --- 22: Triton's model control needs a key -----------------------------------------------------

RESTRICTED = "model-repository,model-config,shared-memory,trace,logging:seasonrec-model-control-key"


def test_triton_restricts_model_control_to_a_key_from_a_secret(chart, default_docs):
    (triton,) = chart.one(default_docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert f"--http-restricted-api={RESTRICTED}=$(TRITON_MODEL_CONTROL_KEY)" in triton["args"]
    assert f"--grpc-restricted-protocol={RESTRICTED}=$(TRITON_MODEL_CONTROL_KEY)" in triton["args"]
    secret = {"secretKeyRef": {"name": "rec-seasonrec-triton", "key": "model-control-key"}}
    assert env_of(triton)["TRITON_MODEL_CONTROL_KEY"]["valueFrom"] == secret
    assert len(_secret(default_docs, chart, "rec-seasonrec-triton", "model-control-key")) >= 32
    # No other pod holds the key, so none can load or unload a model.
    for pod in chart.pods(default_docs):
        if component(pod) != "triton":
            refs = [e for c in containers(pod) for e in c.get("env", []) if "valueFrom" in e]
            assert all(e["valueFrom"]["secretKeyRef"]["name"] != "rec-seasonrec-triton" for e in refs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=b"{}", headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except urllib.error.URLError:
        return 0  # not listening yet


@pytest.mark.integration
def test_the_rendered_triton_flags_lock_a_real_tritonserver(chart, default_docs, tmp_path):
    """The chart's own restricted-API flags, on the tritonserver binary of the nvidia-pytriton wheel."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    root = Path(importlib.util.find_spec("pytriton").origin).parent
    binary = root / "tritonserver" / "bin" / "tritonserver"
    (triton,) = chart.one(default_docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    key = "k" * 40
    flags = [a.replace("$(TRITON_MODEL_CONTROL_KEY)", key) for a in triton["args"] if "restricted" in a]
    assert len(flags) == 2
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    (tmp_path / "repo").mkdir()
    env = {**os.environ, "LD_LIBRARY_PATH": str(root.parent / "nvidia_pytriton.libs")}
    argv = [
        str(binary),
        f"--model-repository={tmp_path / 'repo'}",
        "--model-control-mode=explicit",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        *flags,
    ]
    with open(tmp_path / "triton.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while _post(f"http://127.0.0.1:{http}/v2/repository/index", {"seasonrec-model-control-key": key}) != 200:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "triton.log").read_text()[-2000:]
            time.sleep(0.5)
        base = f"http://127.0.0.1:{http}/v2/repository"
        assert _post(f"{base}/models/ranker/unload") == 403
        assert _post(f"{base}/models/ranker/unload", {"seasonrec-model-control-key": "wrong"}) == 403
        assert _post(f"{base}/index") == 403
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=5) as response:
            assert response.status == 200, "health stays open for the kubelet's probes"
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        with pytest.raises(InferenceServerException, match="restricted"):
            client.unload_model("ranker")
        header = {"triton-grpc-protocol-seasonrec-model-control-key": key}
        assert client.get_model_repository_index(headers=header) is not None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- 23: budgets, Redis, digests, rules -------------------------------------------------------


def test_disruption_budgets_keep_serve_triton_and_redis_up(chart, default_docs):
    budgets = {d["metadata"]["name"]: d["spec"] for d in chart.by_kind(default_docs, "PodDisruptionBudget")}
    pods = {component(p): p["metadata"]["labels"] for p in chart.pods(default_docs)}
    expected = {"serve-head": "serve-head", "serve-workers": "serve-worker", "triton": "triton", "redis": "redis"}
    assert set(budgets) == {f"rec-seasonrec-{name}" for name in expected}
    for name, target in expected.items():
        spec = budgets[f"rec-seasonrec-{name}"]
        assert spec["minAvailable"] == 1
        assert [c for c, labels in pods.items() if _matches(spec["selector"], labels)] == [target]


def test_redis_requires_the_password_from_the_secret_the_serve_pods_read(chart, default_docs):
    redis = chart.one(default_docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    command = redis["command"][-1]
    assert '--requirepass "$REDIS_PASSWORD"' in command
    assert "--maxmemory 768mb --maxmemory-policy noeviction" in command
    secret = {"secretKeyRef": {"name": "rec-seasonrec-redis", "key": "redis-password"}}
    assert env_of(redis)["REDIS_PASSWORD"]["valueFrom"] == secret
    assert len(_secret(default_docs, chart, "rec-seasonrec-redis", "redis-password")) >= 32
    for pod in chart.ray_pods(chart.one(default_docs, "RayService")):
        env = env_of(pod["spec"]["containers"][0])
        assert env["SEASONREC__FEAST__REDIS_PASSWORD"]["valueFrom"] == secret
        assert env["SEASONREC__FEAST__REDIS_CONNECTION"]["value"] == "rec-seasonrec-redis:6379"
        assert env["SEASONREC__AUTH__WRITE_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": "rec-seasonrec-api", "key": "write-token"}
        }


def test_pseudonymizing_gives_every_ray_pod_the_key_from_one_secret_and_no_key_otherwise(chart, default_docs, ci_docs):
    for docs in (default_docs, ci_docs):  # pseudonymize is off by default: no key anywhere
        assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-privacy")]
        for doc in (d for d in docs if d["kind"] in chart.ray_kinds):
            for pod in chart.ray_pods(doc):
                assert "SEASONREC__PRIVACY__KEY" not in env_of(pod["spec"]["containers"][0])
    docs = chart.template("-f", str(chart.ci_values), "--set", "settings.privacy.pseudonymize=true")
    assert len(_secret(docs, chart, "rec-seasonrec-privacy", "pseudonym-key")) >= 32
    key = {"secretKeyRef": {"name": "rec-seasonrec-privacy", "key": "pseudonym-key"}}
    ray = [d for d in docs if d["kind"] in chart.ray_kinds]
    assert len(ray) == 3  # Serve (the API maps raw ids) and both training clusters (ingest hashes them)
    for doc in ray:
        for pod in chart.ray_pods(doc):
            assert env_of(pod["spec"]["containers"][0])["SEASONREC__PRIVACY__KEY"]["valueFrom"] == key
    named = chart.template("--set", "settings.privacy.pseudonymize=true", "--set", "privacy.existingSecret=mine")
    assert not [d for d in named if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-privacy")]
    serve = chart.ray_pods(chart.one(named, "RayService"))[0]["spec"]["containers"][0]
    assert env_of(serve)["SEASONREC__PRIVACY__KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mine"


def test_secrets_never_land_in_the_settings_configmap(chart):
    for args, message in (
        (["--set", "settings.auth.write_token=abc"], "settings.auth: Additional property write_token is not allowed"),
        (["--set", "settings.feast.redis_password=abc"], "settings.feast.redis_password: a password never goes"),
        (["--set", "settings.privacy.key=abc"], "settings.privacy: Additional property key is not allowed"),
    ):
        proc = chart.run("template", "rec", str(chart.path), *args)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_every_image_can_be_pinned_by_digest(chart):
    docs = chart.template(
        "-f",
        str(chart.ci_values),
        *("--set", f"image.digest={DIGEST}", "--set", f"triton.image.digest={DIGEST}"),
        *("--set", f"redis.image.digest={DIGEST}"),
    )
    images = {c["image"] for p in chart.pods(docs) for c in containers(p)}
    assert images == {
        f"registry.example.com/ml/seasonrec@{DIGEST}",
        f"nvcr.io/nvidia/tritonserver@{DIGEST}",
        f"redis@{DIGEST}",
    }
    proc = chart.run("template", "rec", str(chart.path), "--set", "image.digest=latest")
    assert proc.returncode != 0 and "image.digest" in proc.stderr


def test_empty_rules_are_the_rerankers_defaults_as_documented(chart, default_docs, tmp_path):
    from seasonrec.serving.rules import Rules, load_rules

    path = tmp_path / "rules.yaml"
    path.write_text(chart.one(default_docs, "ConfigMap", "rec-seasonrec-rules")["data"]["rules.yaml"])
    rules = load_rules(path)
    assert rules == Rules()
    # What the value's description promises is what the defaults do.
    assert rules.filters.out_of_stock and rules.filters.recently_bought.default_days > 0
    assert rules.in_season.weight > 0 and rules.new_arrival.weight > 0
    assert rules.diversity.max_per_category > 0 and rules.exploration.slots > 0
    line = re.search(r"^## @param rules \[object\] (.+)$", (chart.path / "values.yaml").read_text(), re.M).group(1)
    assert "built-in defaults" in line and "no rules" not in line
