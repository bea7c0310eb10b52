"""The Kubernetes manifests, checked statically (no cluster can run here): every object
validates against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields are
errors), the kustomization lists files that exist, every container command is a command line
`statewright` accepts, and the probes point at the endpoints the API serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "deploy" / "kubernetes"
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def _objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(FOLDER.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = spec.get("template", {}).get("spec", {})
    return list(pod.get("containers", []))


def test_there_are_manifests_for_api_workers_migration_and_retention() -> None:
    kinds = {(name, obj["kind"]) for name, obj in _objects()}
    assert {
        ("api.yaml", "Deployment"),
        ("api.yaml", "Service"),
        ("worker.yaml", "Deployment"),
        ("migrate-job.yaml", "Job"),
        ("purge-cronjob.yaml", "CronJob"),
    } <= kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    for name, obj in _objects():
        if obj["kind"] == "Kustomization":
            continue
        kubernetes_validate.validate(obj, version, strict=True)  # raises with the reason
        assert obj["metadata"]["name"], name


def test_a_bad_manifest_is_refused_by_the_validator() -> None:
    # The check above can fail: a wrong type is caught.
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_the_kustomization_lists_existing_files_and_not_the_example_secret() -> None:
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (FOLDER / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]


def test_every_container_command_is_one_statewright_accepts() -> None:
    parser = build_parser()
    commands = []
    for name, obj in _objects():
        for container in _containers(obj):
            command = container["command"]
            assert command[0] == "statewright", (name, command)
            parsed = parser.parse_args(command[1:])  # SystemExit on an unknown flag
            commands.append(parsed.command)
    assert sorted(commands) == ["api", "db", "purge", "worker"]


def test_probes_and_ports_match_what_the_processes_serve() -> None:
    objects = {(name, obj["kind"]): obj for name, obj in _objects()}
    api = _containers(objects[("api.yaml", "Deployment")])[0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--port" in api["command"] and api["ports"][0]["containerPort"] == 8080
    worker = _containers(objects[("worker.yaml", "Deployment")])[0]
    port = int(worker["command"][worker["command"].index("--metrics-port") + 1])
    assert worker["ports"][0]["containerPort"] == port
    assert worker["livenessProbe"]["httpGet"]["path"] == "/metrics"
    service = objects[("api.yaml", "Service")]
    assert (
        service["spec"]["selector"]
        == objects[("api.yaml", "Deployment")]["spec"]["selector"]["matchLabels"]
    )
