"""Rendered objects against real schemas: Kubernetes' own (kubernetes-validate) and KubeRay's CRDs."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

# The chart's floor (Chart.yaml kubeVersion) and the newest release kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", ["default_docs", "ci_docs"])
def test_core_objects_validate_strictly(values, version, request):
    docs = [d for d in request.getfixturevalue(values) if not d["apiVersion"].startswith("ray.io/")]
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "HorizontalPodAutoscaler"} <= kinds
    assert "StatefulSet" in kinds, "the bundled Redis is on by default"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.absolute_path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {path}: {err.message} (Kubernetes {version})")


def test_strict_core_validation_rejects_an_unknown_field(chart, ci_docs):
    deployment = copy.deepcopy(chart.one(ci_docs, "Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("values", ["default_docs", "ci_docs"])
def test_ray_objects_match_the_kuberay_crds(chart, values, request, crd_validator):
    ray = [d for d in request.getfixturevalue(values) if d["kind"] in chart.ray_kinds]
    assert ray, "no RayService, RayJob or RayCluster rendered"
    for doc in ray:
        assert doc["apiVersion"] == "ray.io/v1"
        errors = crd_validator(doc)
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(errors)


def test_ci_values_render_every_ray_kind(chart, ci_docs):
    assert sorted({d["kind"] for d in ci_docs if d["kind"] in chart.ray_kinds}) == sorted(chart.ray_kinds)


@pytest.mark.parametrize(
    ("path", "field", "typo"),
    [
        ([], "enableInTreeAutoscaling", "enableInTreeAutoscalling"),
        (["headGroupSpec"], "rayStartParams", "rayStartParam"),
        (["workerGroupSpecs", 0], "maxReplicas", "maxReplica"),
        (["headGroupSpec", "template", "spec", "containers", 0], "volumeMounts", "volumeMount"),
    ],
)
def test_a_misspelled_field_under_rayclusterconfig_is_an_error(chart, default_docs, crd_validator, path, field, typo):
    service = copy.deepcopy(chart.one(default_docs, "RayService"))
    assert not crd_validator(service)
    node = service["spec"]["rayClusterConfig"]
    for key in path:
        node = node[key]
    node[typo] = node.pop(field)
    errors = crd_validator(service)
    assert any(f"'{typo}' was unexpected" in e for e in errors), errors


def test_crd_check_accepts_int_or_string_and_rejects_wrong_types(chart, ci_docs, crd_validator):
    job = copy.deepcopy(chart.one(ci_docs, "RayJob"))
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    # Resource quantities are int-or-string in Kubernetes: both spellings are valid.
    worker["resources"]["limits"]["nvidia.com/gpu"] = "1"
    assert not crd_validator(job)
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    assert any(e.startswith("spec.shutdownAfterJobFinishes") for e in crd_validator(job))
