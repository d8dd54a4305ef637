"""deploy/kubernetes, deploy/kserve and deploy/arc: the manifests checked against the Kubernetes API's
own schemas (kubernetes-validate, strict), and the containers' commands run as the manifests write
them, against a registry that wants a password, given the way a Kubernetes Secret gives it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import pytest
import requests
import yaml

from loopback import free_port, stop, wait_until_ready
from modelci.export.parity import reproduces_samples
from modelci.registry.artifact import ANNOTATION_PREFIX, push_files
from modelci.registry.reference import parse_reference
from modelci.registry.signature import load_signing_key, sign
from test_remote import locked_registry  # noqa: F401  (the session's registry with a password, as a fixture)
from test_serve import artifact_of, exported  # noqa: F401  (the module's model, as a fixture)
from test_signature import key_pair

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES = kubernetes_validate.latest_version()


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_of(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": {"containers": containers,
                                                                                       **spec}}


def test_the_server_manifests_are_valid_kubernetes() -> None:
    found = {d["kind"]: d for d in documents(DEPLOY / "kubernetes" / "modelci-serve.yaml")}
    assert set(found) == {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"}
    for document in documents(DEPLOY / "kubernetes" / "modelci-serve.yaml"):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
    (container,) = found["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def serve_option(args: list[str], name: str) -> float:
    """The value of `modelci serve`'s option `name` in a container's arguments, or the command's default."""
    from modelci.serve.cli import serve

    if name in args:
        return float(args[args.index(name) + 1])
    (default,) = [p.default for p in serve.params if p.opts == [name]]
    return float(default)


def pre_stop_seconds(container: dict[str, Any]) -> float:
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep", f"a preStop hook this test cannot time: {command}"
    return float(command[1])


@pytest.mark.parametrize("which", ["kubernetes", "kserve"])
def test_a_stopping_pod_drains_and_finishes_within_its_grace_period(which: str) -> None:
    """preStop, then SIGTERM: the drain and the requests in flight must end before the kubelet's SIGKILL."""
    if which == "kubernetes":
        deployment = next(d for d in documents(DEPLOY / "kubernetes" / "modelci-serve.yaml")
                          if d["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
    else:
        runtime = {d["kind"]: d for d in documents(DEPLOY / "kserve" / "modelci-runtime.yaml")}
        pod = runtime["ServingRuntime"]["spec"]
    (container,) = pod["containers"]
    grace = pod.get("terminationGracePeriodSeconds", 30)  # NOTE: Kubernetes' default
    drain = serve_option(container["args"], "--drain-period")
    stop = pre_stop_seconds(container) + drain + serve_option(container["args"], "--shutdown-timeout")
    assert drain >= 5  # the few seconds kube-proxies and ingresses take to stop routing to the pod
    assert stop + 5 <= grace


def quick_stop(args: list[str]) -> list[str]:
    """The container's arguments without the drain: the tests stop the server at once."""
    at = args.index("--drain-period")
    return [*args[:at + 1], "0", *args[at + 2:]]


def test_the_kserve_and_runner_pods_are_valid_kubernetes() -> None:
    """KServe's kinds are custom resources, with no schema here: the pod KServe makes of them (the
    storage initializer before the runtime's container) is checked instead, as is the runner pod of
    the Actions Runner Controller example."""
    runtime = {d["kind"]: d for d in documents(DEPLOY / "kserve" / "modelci-runtime.yaml")}
    initializer = runtime["ClusterStorageContainer"]["spec"]["container"]
    kubernetes_validate.validate(pod_of(runtime["ServingRuntime"]["spec"]["containers"],
                                        initContainers=[initializer]), KUBERNETES, strict=True)
    (service,) = documents(DEPLOY / "kserve" / "inference-service.yaml")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["ServingRuntime"]["metadata"]["name"]
    (prefix,) = [f["prefix"] for f in runtime["ClusterStorageContainer"]["spec"]["supportedUriFormats"]]
    assert model["storageUri"].startswith(prefix)
    arc = yaml.safe_load((DEPLOY / "arc" / "values.yaml").read_text())
    kubernetes_validate.validate({**pod_of([]), "spec": arc["template"]["spec"]}, KUBERNETES, strict=True)


@pytest.fixture
def secret(locked_registry: str, tmp_path: Path) -> Path:  # noqa: F811
    """The folder a kubernetes.io/dockerconfigjson Secret is mounted as: config.json, as
    `kubectl create secret docker-registry` writes it."""
    folder = tmp_path / "secret"
    folder.mkdir()
    auth = base64.b64encode(b"ci:secret").decode()
    (folder / "config.json").write_text(json.dumps(
        {"auths": {locked_registry: {"username": "ci", "password": "secret", "auth": auth}}}))
    return folder


@pytest.fixture
def pushed(locked_registry: str, exported: Path, tmp_path: Path,  # noqa: F811
           monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The model, pushed as prod and as v1.2.0; (the repository, the digest)."""
    monkeypatch.setenv("MODELCI_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("MODELCI_REGISTRY_PASSWORD", "secret")
    repository = f"{locked_registry}/acme/churn"
    done = push_files(artifact_of(tmp_path / "artifact", exported, exported),
                      parse_reference(f"{repository}:v1.2.0"), ["v1.2.0", "prod"],
                      {f"{ANNOTATION_PREFIX}verdict": "passed"})
    private, _ = key_pair(tmp_path)  # NOTE: modelci.pub beside it is the ConfigMap's key
    sign(parse_reference(f"{repository}@{done.digest}"), load_signing_key(str(private)))
    return repository, done.digest


def container_env(**variables: str) -> dict[str, str]:
    """A container's environment: none of the test's credentials, and this modelci first on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELCI_", "DOCKER_"))}
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", **variables}


@contextmanager
def running(args: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """`modelci ARGS` (the image's entrypoint) until ready; its URL."""
    process = subprocess.Popen([sys.executable, "-m", "modelci", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(process, f"{url}/v2/health/ready", "the container's server")
    try:
        yield url
    finally:
        stop(process)


def answers_its_samples(url: str, samples: dict[str, Any]) -> bool:
    rows = samples["inputs"]
    inputs = [{"name": name, "shape": [len(rows), 1],
               "datatype": "BYTES" if isinstance(rows[0][name], str) else "FP64",
               "data": [row[name] for row in rows]} for name in rows[0]]
    answer = requests.post(f"{url}/v2/models/model/infer", json={"inputs": inputs}, timeout=10).json()
    outputs = {o["name"]: np.asarray(o["data"], dtype=np.float64) for o in answer["outputs"]}
    return reproduces_samples(outputs[samples["output"]], samples)


def test_the_deployments_container_serves_the_tag_with_the_secrets_credentials(
        pushed: tuple[str, str], secret: Path, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    repository, digest = pushed
    deployment = next(d for d in documents(DEPLOY / "kubernetes" / "modelci-serve.yaml") if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port = free_port()
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    public_key = tmp_path / "modelci.pub"  # the key of the pushed artifact's signature, as the ConfigMap gives it
    args = [{"ghcr.io/OWNER/MODEL:prod": f"{repository}:prod", "8080": str(port),
             f"{mounted['verify']}/modelci.pub": str(public_key)}.get(a, a) for a in quick_stop(container["args"])]
    (docker_config,) = [e["value"] for e in container["env"] if e["name"] == "DOCKER_CONFIG"]
    assert docker_config == mounted["registry"]  # the Secret's config.json is where modelci looks
    with running(args, container_env(DOCKER_CONFIG=str(secret)), port) as url:
        assert requests.get(f"{url}/v2/models/model", timeout=5).json()["versions"] == [digest.split(":")[1][:12]]
        assert answers_its_samples(url, json.loads((exported / ".modelci/out/samples.json").read_text()))


def test_the_kserve_storage_initializer_pulls_what_the_runtime_serves(
        pushed: tuple[str, str], secret: Path, exported: Path, tmp_path: Path) -> None:  # noqa: F811
    repository, digest = pushed
    runtime = {d["kind"]: d for d in documents(DEPLOY / "kserve" / "modelci-runtime.yaml")}
    initializer = runtime["ClusterStorageContainer"]["spec"]["container"]
    (service,) = documents(DEPLOY / "kserve" / "inference-service.yaml")
    storage_uri = service["spec"]["predictor"]["model"]["storageUri"].replace("ghcr.io/OWNER/MODEL", repository)
    mount = tmp_path / "mnt" / "models"  # the emptyDir KServe mounts at /mnt/models
    mount.mkdir(parents=True)
    # KServe runs the container's command with two arguments: the storageUri and the folder
    (credentials,) = [e for e in initializer["env"] if e["name"] == "MODELCI_DOCKER_CONFIG_JSON"]
    assert credentials["valueFrom"]["secretKeyRef"] == {"name": "modelci-registry", "key": ".dockerconfigjson",
                                                       "optional": True}
    pulled = subprocess.run([*initializer["command"], storage_uri, str(mount)], capture_output=True, text=True,
                            env=container_env(MODELCI_DOCKER_CONFIG_JSON=(secret / "config.json").read_text()),
                            timeout=120, check=False)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr

    (container,) = runtime["ServingRuntime"]["spec"]["containers"]
    port = free_port()
    names = {"{{.Name}}": service["metadata"]["name"], "8080": str(port)}
    args = [names.get(a, a).replace("/mnt/models", str(mount)) for a in quick_stop(container["args"])]
    with running(args, container_env(), port) as url:
        assert answers_its_samples(url, json.loads((exported / ".modelci/out/samples.json").read_text()))
        # the artifact's version, as a server watching the tag reports it: the pulled manifest says which
        assert requests.get(f"{url}/v2/models/model", timeout=5).json()["versions"] == [digest.split(":")[1][:12]]

    refused = subprocess.run([*initializer["command"], storage_uri, str(tmp_path / "other")], capture_output=True,
                             text=True, env=container_env(), timeout=120, check=False)
    assert refused.returncode == 3  # no Secret: the registry's 401, said as such
    assert "refused (401) without credentials" in refused.stderr
