"""deploy/k8s: parses, validates against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail) and Strimzi's CRD schemas, and is a complete kustomize base."""
from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest
import yaml

from schemas.topics import TOPICS
from deploy_manifests import K8S, k8s_files, load_all

# The oldest release with securityContext.appArmorProfile, and the newest the package knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CORE_KINDS = {"Namespace", "ConfigMap", "ServiceAccount", "DaemonSet", "Deployment", "Service"}


def core_objects() -> list[tuple[str, dict]]:
    return [(f"{p.relative_to(K8S)}:{d['kind']}/{d['metadata']['name']}", d)
            for p in k8s_files() for d in load_all(p) if d["kind"] in CORE_KINDS]


def objects_of(kind: str) -> list[dict]:
    return [d for p in k8s_files() for d in load_all(p) if d["kind"] == kind]


def test_every_manifest_parses_and_has_kind_and_name():
    files = k8s_files() + sorted(K8S.rglob("kustomization.yaml"))
    assert len(files) >= 6
    for path in files:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: object without apiVersion/kind"
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_validate_against_kubernetes_openapi(version):
    objects = core_objects()
    assert {d["kind"] for _, d in objects} == CORE_KINDS
    for where, doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where} is invalid for Kubernetes {version}: {err.message}")


def test_validator_rejects_a_misspelt_field():
    """The validator is real: a typo in a securityContext fails it."""
    ds = copy.deepcopy(objects_of("DaemonSet")[0])
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUsr"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSIONS[-1], strict=True)


def test_kafka_topics_validate_against_strimzi_crd_schema(strimzi_validate):
    topics = objects_of("KafkaTopic")
    results = strimzi_validate(topics)
    assert len(results) == len(TOPICS)
    bad = [r for r in results if not r["ok"]]
    assert not bad, bad
    broken = copy.deepcopy(topics[0])
    broken["spec"]["partitions"] = 0  # the CRD says minimum 1
    assert strimzi_validate([broken])[0]["ok"] is False


def test_kustomization_lists_every_manifest_and_image():
    kust = load_all(K8S / "kustomization.yaml")[0]
    listed = {K8S / r for r in kust["resources"]}
    assert all(p.exists() for p in listed), "kustomization names a missing file"
    assert listed == set(K8S.glob("*.yaml")) - {K8S / "kustomization.yaml"}
    images = {i["name"] for i in kust["images"]}
    used = {c["image"].split(":")[0] for kind in ("DaemonSet", "Deployment") for w in objects_of(kind)
            for c in w["spec"]["template"]["spec"]["containers"] + w["spec"]["template"]["spec"].get("initContainers", [])}
    assert used == images
    overlay = load_all(K8S / "overlays/privileged/kustomization.yaml")[0]
    assert overlay["resources"] == ["../.."]
    target = overlay["patches"][0]["target"]
    assert any(d["metadata"]["name"] == target["name"] for d in objects_of(target["kind"]))


def test_collector_has_only_the_ebpf_capabilities_and_probes_its_metrics_port():
    pod = objects_of("DaemonSet")[0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON", "SYS_RESOURCE"]}
    assert pod["hostPID"] is True and pod["hostNetwork"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ("/host", "/host/proc", "/host/sys", "/lib/modules"):
        assert mounts[path]["readOnly"] is True, path
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HMTEL_HOST_ROOT"] == "/host"
    port = int(env["HMTEL_METRICS_LISTEN"].rsplit(":", 1)[1])
    assert {p["containerPort"] for p in container["ports"] if p["name"] == "metrics"} == {port}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert _mib(requests["memory"]) <= _mib(limits["memory"])


def test_processors_and_dashboard_run_unprivileged():
    for kind in ("Deployment",):
        for workload in objects_of(kind):
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for c in pod["containers"] + pod.get("initContainers", []):
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_dashboard_is_probed_on_its_health_endpoint_and_served_by_the_service():
    (deployment,) = [d for d in objects_of("Deployment") if d["metadata"]["name"] == "hmtel-dashboard"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    (service,) = objects_of("Service")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def _mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_privileged_overlay_patch_applies_and_validates():
    """The overlay's JSON 6902 patch (replace ops only), applied as kustomize would."""
    overlay = load_all(K8S / "overlays/privileged/kustomization.yaml")[0]
    (patch,) = overlay["patches"]
    target = copy.deepcopy(next(d for d in objects_of(patch["target"]["kind"])
                                if d["metadata"]["name"] == patch["target"]["name"]))
    for op in yaml.safe_load(patch["patch"]):
        assert op["op"] == "replace"
        *parents, last = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
        node = target
        for part in parents:
            node = node[part]
        assert last in node or isinstance(node, list), f"{op['path']} does not exist in the base"
        node[last] = op["value"]
    kubernetes_validate.validate(target, K8S_VERSIONS[-1], strict=True)
    assert target["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] is True
