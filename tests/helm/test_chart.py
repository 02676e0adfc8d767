"""Chart conventions: lint, documented values, a schema that rejects wrong values, NOTES."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml


@pytest.mark.parametrize("ci", [False, True], ids=["default", "ci-values"])
def test_helm_lint_strict(chart, ci):
    proc = chart.run("lint", "--strict", str(chart.path), *(["-f", str(chart.ci_values)] if ci else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_defaults_render_the_serving_stack_and_no_jobs(chart, default_docs):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in default_docs)
    assert kinds == [
        ("ConfigMap", "rec-seasonrec-feast"),
        ("ConfigMap", "rec-seasonrec-rules"),
        ("ConfigMap", "rec-seasonrec-settings"),
        ("Deployment", "rec-seasonrec-triton"),
        ("HorizontalPodAutoscaler", "rec-seasonrec-triton"),
        ("NetworkPolicy", "rec-seasonrec-ray-dashboard"),
        ("NetworkPolicy", "rec-seasonrec-ray-serve"),
        ("NetworkPolicy", "rec-seasonrec-redis"),
        ("NetworkPolicy", "rec-seasonrec-serve-http"),
        ("NetworkPolicy", "rec-seasonrec-triton"),
        ("PersistentVolumeClaim", "rec-seasonrec-data"),
        ("PodDisruptionBudget", "rec-seasonrec-redis"),
        ("PodDisruptionBudget", "rec-seasonrec-serve-head"),
        ("PodDisruptionBudget", "rec-seasonrec-serve-workers"),
        ("PodDisruptionBudget", "rec-seasonrec-triton"),
        ("RayService", "rec-seasonrec"),
        ("Secret", "rec-seasonrec-api"),
        ("Secret", "rec-seasonrec-ray-auth"),
        ("Secret", "rec-seasonrec-redis"),
        ("Secret", "rec-seasonrec-triton"),
        ("Service", "rec-seasonrec-redis"),
        ("Service", "rec-seasonrec-triton"),
        ("StatefulSet", "rec-seasonrec-redis"),
    ]


def _value_paths(node, prefix=()):
    """Every key path of values.yaml: (path, is_leaf)."""
    for key, value in node.items():
        nested = isinstance(value, dict) and bool(value)
        yield (*prefix, key), not nested
        if nested:
            yield from _value_paths(value, (*prefix, key))


def test_every_value_is_documented_with_a_param_line(chart):
    text = (chart.path / "values.yaml").read_text()
    params = {tuple(m.split(".")) for m in re.findall(r"^\s*## @param (\S+)", text, re.M)}
    paths = dict(_value_paths(yaml.safe_load(text)))
    assert params <= set(paths), f"@param lines naming no value: {sorted(params - set(paths))}"
    # A leaf is documented by its own line or by one on a map above it (Bitnami's [object]).
    undocumented = [p for p, leaf in paths.items() if leaf and not any(p[:n] in params for n in range(1, len(p) + 1))]
    assert not undocumented, f"values without ## @param: {undocumented}"
    assert re.search(r"^## @section", text, re.M).start() < re.search(r"^\s*## @param", text, re.M).start()


def _closed_objects(schema, prefix=()):
    """Paths of schema objects that list their keys (additionalProperties false) with those keys."""
    if schema.get("additionalProperties") is False:
        yield prefix, set(schema["properties"])
        for key, sub in schema["properties"].items():
            yield from _closed_objects(sub, (*prefix, key))


def test_schema_and_values_name_the_same_keys(chart):
    schema = json.loads((chart.path / "values.schema.json").read_text())
    values = yaml.safe_load((chart.path / "values.yaml").read_text())
    for path, keys in _closed_objects(schema):
        node = values
        for key in path:
            node = node[key]
        where = f"values.yaml and values.schema.json differ under {path or 'the top'}"
        # settings may leave whole sections at seasonrec's defaults; every other object is spelled out.
        assert set(node) <= keys if path == ("settings",) else set(node) == keys - {"global"}, where


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "triton.replicas=abc"], "triton.replicas: Invalid type. Expected: integer, given: string"),
        (["--set", "train.gpu=maybe"], "train.gpu: Invalid type. Expected: boolean"),
        (["--set", "triton.replica=2"], "Additional property replica is not allowed"),
        (["--set", "triton.configVariant=onnx"], "triton.configVariant"),
        (["--set", "gpuWorkers.rayStartParams.num-cpus=4"], "gpuWorkers.rayStartParams.num-cpus: Invalid type"),
        (["--set", "settings.trian.epochs=2"], "settings: Additional property trian is not allowed"),
        (["--set", "triton.modelRepository.s3Uri=https://bucket"], "triton.modelRepository.s3Uri"),
    ],
)
def test_schema_rejects_wrong_values_naming_the_field(chart, args, message):
    proc = chart.run("template", "rec", str(chart.path), *args)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_schema_rejects_a_wrong_type_from_a_values_file(chart, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"serve": {"deployments": {"Scorer": {"maxReplicas": "many"}}}}))
    proc = chart.run("template", "rec", str(chart.path), "-f", str(values))
    assert proc.returncode != 0
    assert "serve.deployments.Scorer.maxReplicas: Invalid type. Expected: integer, given: string" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.enabled=true", "--set", "train.workers=3"], "train.workers (3) needs more GPUs"),
        (["--set", "triton.tensorrtBuild.enabled=true"], "needs triton.configVariant tensorrt_plan"),
        (
            ["--set", "triton.modelRepository.type=s3", "--set", "triton.modelRepository.s3Uri=s3://b/r"]
            + ["--set", "triton.configVariant=tensorrt_plan", "--set", "triton.tensorrtBuild.enabled=true"],
            "needs triton.modelRepository.type pvc",
        ),
        (["--set", "triton.modelRepository.type=s3"], "triton.modelRepository.s3Uri is required"),
        (["--set", "redis.enabled=false"], "redis.external.host is required"),
        (
            ["--set", "redis.enabled=false", "--set", "redis.external.host=redis.prod"],
            "redis.auth.existingSecret is required when redis.auth.enabled is true with an external Redis",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_message(chart, args, message):
    proc = chart.run("template", "rec", str(chart.path), *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def notes(chart, tmp_path_factory):
    """NOTES.txt as `helm install` prints it: `helm template` skips it, so a copy renders it as a template."""
    copy = tmp_path_factory.mktemp("chart") / "seasonrec"
    shutil.copytree(chart.path, copy)
    (copy / "templates" / "notes-as-yaml.yaml").write_text(
        'text: {{ include (print $.Template.BasePath "/NOTES.txt") . | toJson }}\n'
    )

    def render(*args: str) -> str:
        proc = chart.run("template", "rec", str(copy), "--show-only", "templates/notes-as-yaml.yaml", *args)
        assert proc.returncode == 0, proc.stderr
        return yaml.safe_load(proc.stdout)["text"]

    return render


def test_notes_print_the_endpoints_and_the_ray_job_submit_line(chart, notes):
    text = notes("-f", str(chart.ci_values))
    assert "http://rec-seasonrec-serve-svc.default.svc:8000" in text
    assert "kubectl -n default port-forward svc/rec-seasonrec-head-svc 8265:8265" in text
    assert "rec-seasonrec-triton.default.svc:8001" in text
    assert "kubectl -n default get rayjob rec-seasonrec-train-2024w48" in text
    submits = [line.strip() for line in text.splitlines() if line.strip().startswith("ray job submit")]
    assert len(submits) == 2
    for line in submits:
        script = line.split(" -- python ", 1)[1].split()[0]
        assert (chart.repo / script).is_file(), f"NOTES name {script}, which does not exist"


def test_notes_follow_what_is_enabled(notes):
    text = notes("--set", "serve.enabled=false", "--set", "triton.enabled=false")
    assert "serve-svc" not in text and "triton" not in text.lower()
    assert "Feast online store (Redis): rec-seasonrec-redis:6379" in text


def test_readme_lists_every_parameter_with_its_description(chart):
    values = (chart.path / "values.yaml").read_text()
    readme = (chart.path / "README.md").read_text()
    params = re.findall(r"^\s*## @param (\S+) (?:\[\w+\] )?(.+)$", values, re.M)
    rows = dict(re.findall(r"^\| `([\w.-]+)` \| (.+?) \| `.*` \|$", readme, re.M))
    assert [name for name, _ in params] == list(rows), "helm/README.md parameters differ from values.yaml"
    for name, description in params:
        assert rows[name] == description.replace("|", "\\|"), name
