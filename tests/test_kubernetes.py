"""deploy/kubernetes/, checked offline (no cluster): each overlay rendered by Kustomize.

``kubectl kustomize`` (or ``kustomize build``) renders ``overlays/dev`` and ``overlays/production``;
without either tool the tests skip and say so, unless ``REQUIRE_KUBERNETES_TOOLS=1`` (CI), where
they fail. kubernetes-validate checks every rendered object against the Kubernetes JSON schemas it
bundles; the tests below cover what a schema cannot see: the one image and its entrypoint, ports
and probes against the contract, environment names and values against each service's Settings,
references between objects, each service's own database, graceful shutdown, and migrations.
"""

from __future__ import annotations

import base64
import functools
import importlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from checkout_suite.cli import app as cli_app
from checkout_suite.services import SERVICES
from servicekit.db.urls import is_sqlite, normalize_url
from servicekit.metrics import METRICS_PATH
from tests.test_compose import DOCKERFILE, INIT_SQL, ROOT, dockerfile_instructions

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
# The schemas of the kubectl our machines and CI run (v1.32).
KUBERNETES_VERSION = "1.32.0"
REQUIRE_TOOLS = os.environ.get("REQUIRE_KUBERNETES_TOOLS") == "1"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
APP_UID = 10001

# Secrets an overlay expects the cluster's operator to create, with the keys they must hold: not
# in the rendered output, and listed in README.md's "Deploying on Kubernetes".
EXTERNAL_SECRETS: dict[str, dict[str, frozenset[str]]] = {
    "dev": {},
    "production": {
        "checkout-suite-secrets": frozenset(
            {
                *(f"{name}-database-url" for name in SERVICES),
                "api-keys",
                "service-token",
                "smtp-url",
                "broker-url",
            }
        )
    },
}

# Settings with a default a deployment cannot keep: SQLite under /app/data (one replica only, on
# a read-only root), 127.0.0.1 (unreachable from the probes), an open API, the services at
# 127.0.0.1, a grace period the pod's termination must be sized for, and mail never sent.
# Fields without a default are required as well (``required_settings``).
DEPLOYMENT_REQUIRED: dict[str, frozenset[str]] = {
    name: frozenset({"DATABASE_URL", "HOST", "PORT", "SERVICE_TOKEN"}) for name in SERVICES
}
DEPLOYMENT_REQUIRED["orchestrator"] |= {
    "API_KEYS",
    "EMAIL_URL",
    "WAREHOUSE_URL",
    "REWARDS_URL",
    "SHUTDOWN_GRACE_S",
}
DEPLOYMENT_REQUIRED["email"] |= {"SMTP_URL"}


@dataclass(frozen=True)
class External:
    """An environment value read from a Secret the cluster's operator provides."""

    secret: str
    key: str


@dataclass
class Rendered:
    """The objects of one rendered overlay, and lookups across them."""

    overlay: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: {len(found)} {kind} named {name}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] in WORKLOAD_KINDS]

    def deployment(self, service: str) -> dict[str, Any]:
        return self.get("Deployment", service)

    def config_data(self, name: str) -> dict[str, str] | None:
        for obj in self.of_kind("ConfigMap"):
            if obj["metadata"]["name"] == name:
                return dict(obj.get("data", {}))
        return None

    def secret_data(self, name: str) -> dict[str, str] | None:
        for obj in self.of_kind("Secret"):
            if obj["metadata"]["name"] == name:
                data = {
                    key: base64.b64decode(value).decode()
                    for key, value in obj.get("data", {}).items()
                }
                return data | dict(obj.get("stringData", {}))
        return None

    def external(self, secret: str) -> frozenset[str] | None:
        """The documented keys of ``secret`` if the operator provides it (and it is not rendered)."""
        if self.secret_data(secret) is not None:
            return None
        # Kustomize leaves the name of a Secret it does not generate as written.
        return EXTERNAL_SECRETS[self.overlay].get(secret)

    def env(self, container: dict[str, Any]) -> dict[str, str | External]:
        """``container``'s environment with each reference resolved (external Secrets kept as such)."""
        values: dict[str, str | External] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data = self.config_data(source["configMapRef"]["name"])
                assert data is not None, source
                values.update(data)
            else:
                name = source["secretRef"]["name"]
                data = self.secret_data(name)
                assert data is not None, f"envFrom Secret {name} must be rendered, keys unknown"
                values.update(data)
        for entry in container.get("env", []):
            name = entry["name"]
            if "value" in entry:
                values[name] = str(entry["value"])
                continue
            ref = entry["valueFrom"]
            if "configMapKeyRef" in ref:
                cm = ref["configMapKeyRef"]
                data = self.config_data(cm["name"])
                assert data is not None, f"{name}: no ConfigMap {cm['name']}"
                if cm["key"] in data:
                    values[name] = data[cm["key"]]
                else:
                    assert cm.get("optional"), f"{name}: ConfigMap {cm['name']} lacks {cm['key']}"
            elif "secretKeyRef" in ref:
                sk = ref["secretKeyRef"]
                documented = self.external(sk["name"])
                if documented is not None:
                    assert sk["key"] in documented, (
                        f"{name}: key {sk['key']} of the operator's Secret {sk['name']} is not "
                        "in EXTERNAL_SECRETS (and README.md)"
                    )
                    values[name] = External(sk["name"], sk["key"])
                    continue
                data = self.secret_data(sk["name"])
                assert data is not None, (
                    f"{self.overlay}: {name} reads a missing Secret {sk['name']}"
                )
                # Even an optional key is there in a rendered Secret: choreography is one edit away.
                assert sk["key"] in data, f"{name}: Secret {sk['name']} lacks {sk['key']}"
                values[name] = data[sk["key"]]
            else:
                pytest.fail(f"{name}: unexpected valueFrom {ref}")
        return values


def kustomize_command(path: Path) -> list[str]:
    """How to render ``path``: ``kubectl kustomize`` or ``kustomize build``; skip (or fail) without."""
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kubectl:
        return [kubectl, "kustomize", str(path)]
    if kustomize:
        return [kustomize, "build", str(path)]
    reason = (
        "kubectl not on PATH: neither kubectl (Kustomize built in) nor kustomize is installed, "
        "so deploy/kubernetes cannot be rendered"
    )
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (REQUIRE_KUBERNETES_TOOLS=1)")
    pytest.skip(reason)


@functools.cache
def _render(path: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        kustomize_command(path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


def render(overlay: str) -> Rendered:
    return Rendered(overlay, [dict(obj) for obj in _render(KUBERNETES / "overlays" / overlay)])


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return render(request.param)


@pytest.fixture
def dev() -> Rendered:
    return render("dev")


@pytest.fixture
def production() -> Rendered:
    return render("production")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def app_container(rendered: Rendered, service: str) -> dict[str, Any]:
    containers = pod_spec(rendered.deployment(service))["containers"]
    assert [c["name"] for c in containers] == [service], "one container: the service"
    container: dict[str, Any] = containers[0]
    return container


def all_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    """The container port a probe, annotation or Service's targetPort names (number or name)."""
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if isinstance(port, str) and not port.isdigit():
        assert port in ports, f"{container['name']} has no port named {port}"
        return int(ports[port])
    assert int(port) in ports.values(), f"{container['name']} does not expose {port}"
    return int(port)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_sleep_s(container: dict[str, Any]) -> float:
    """Seconds the container's preStop hook waits (an ``exec: sleep N`` or a ``sleep`` action)."""
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    assert len(command) == 2, command
    return float(command[1])


def settings_class(service: str) -> Any:
    return importlib.import_module(f"{SERVICES[service].package}.settings").Settings


def required_settings(service: str) -> set[str]:
    cls = settings_class(service)
    without_default = {name.upper() for name, f in cls.model_fields.items() if f.is_required()}
    return without_default | DEPLOYMENT_REQUIRED[service]


def overlay_image(overlay: str) -> str:
    kustomization = yaml.safe_load(
        (KUBERNETES / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    (entry,) = [i for i in kustomization["images"] if i["name"] == "checkout-suite"]
    return f"{entry['newName']}:{entry['newTag']}"


def kubernetes_section() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Deploying on Kubernetes\n(.*?)(?=^## )", readme, re.S | re.M)
    assert match, "README.md has no section '## Deploying on Kubernetes'"
    return match.group(1)


def test_every_rendered_object_matches_the_kubernetes_schema(rendered: Rendered) -> None:
    """kubernetes-validate accepts every object (strict: no unknown field), offline."""
    kinds = {obj["kind"] for obj in rendered.objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"} <= kinds
    for obj in rendered.objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} at {where}: {exc.message}")


def test_every_object_lives_in_the_overlays_namespace(rendered: Rendered) -> None:
    """One namespace per overlay, declared by the overlay itself."""
    (namespace,) = rendered.of_kind("Namespace")
    name = namespace["metadata"]["name"]
    for obj in rendered.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == name, obj["metadata"]


def test_the_four_deployments_run_one_image_as_checkout_suite_serve(rendered: Rendered) -> None:
    """Same image (the overlay's `images:` entry) for the four and their migrations; args [NAME]."""
    entrypoint = dict(dockerfile_instructions())["ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["checkout-suite", "serve"]
    image = overlay_image(rendered.overlay)
    for service in SERVICES:
        container = app_container(rendered, service)
        assert "command" not in container, "the image's entrypoint, `checkout-suite serve`"
        assert container["args"] == [service], "one uvicorn process: no --workers"
        for each in all_containers(rendered.deployment(service)):
            assert each["image"] == image, (service, each["name"])
    assert {d["metadata"]["name"] for d in rendered.of_kind("Deployment")} >= set(SERVICES)


def test_ports_and_probes_follow_the_contract(rendered: Rendered) -> None:
    """Each service listens on its contract port on every interface; /readyz and /healthz there."""
    for service, spec in SERVICES.items():
        container = app_container(rendered, service)
        assert [p["containerPort"] for p in container["ports"]] == [spec.port]
        env = rendered.env(container)
        assert env["PORT"] == str(spec.port)
        assert env["HOST"] == "0.0.0.0"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (service, probe)
            assert resolve_port(container, get["port"]) == spec.port, (service, probe)
        if "startupProbe" in container:
            assert (
                resolve_port(container, container["startupProbe"]["httpGet"]["port"]) == spec.port
            )


def test_orchestrator_runs_replicas_and_a_disruption_budget_keeps_them(rendered: Rendered) -> None:
    """At least two orchestrator replicas; a PDB selects exactly its pods and allows a drain."""
    deployment = rendered.deployment("orchestrator")
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 2
    labels = pod_labels(deployment)
    budgets = [
        b
        for b in rendered.of_kind("PodDisruptionBudget")
        if selects(b["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1
    (budget,) = budgets
    for other in rendered.workloads():
        if other is not deployment:
            assert not selects(budget["spec"]["selector"]["matchLabels"], pod_labels(other))
    if "minAvailable" in budget["spec"]:
        assert 1 <= budget["spec"]["minAvailable"] < replicas
    else:
        assert 1 <= budget["spec"]["maxUnavailable"] < replicas


def test_termination_outlasts_the_pre_stop_sleep_and_the_shutdown_grace(
    rendered: Rendered,
) -> None:
    """SIGTERM comes after a preStop sleep; the orchestrator's SHUTDOWN_GRACE_S fits before SIGKILL."""
    for service in SERVICES:
        spec = pod_spec(rendered.deployment(service))
        container = app_container(rendered, service)
        sleep_s = prestop_sleep_s(container)
        assert 1 <= sleep_s <= 15, service
        grace = rendered.env(container).get("SHUTDOWN_GRACE_S", "0")
        assert isinstance(grace, str), "set in the manifest, next to the termination grace"
        grace_s = float(grace)
        assert spec["terminationGracePeriodSeconds"] > sleep_s + grace_s, service
    # The orchestrator's value is the one its Settings read (and not its default, left implicit).
    (entry,) = [
        e for e in app_container(rendered, "orchestrator")["env"] if e["name"] == "SHUTDOWN_GRACE_S"
    ]
    settings = settings_class("orchestrator").model_validate({"shutdown_grace_s": entry["value"]})
    assert settings.shutdown_grace_s == float(entry["value"]) > 0


@pytest.mark.parametrize("service", list(SERVICES))
def test_environment_names_are_settings_of_the_service(rendered: Rendered, service: str) -> None:
    """Each variable set is a field of the service's Settings (or OTEL_*), with a valid value."""
    cls = settings_class(service)
    for container in all_containers(rendered.deployment(service)):
        env = rendered.env(container)
        names = {name for name in env if not name.startswith("OTEL_")}
        unknown = {name for name in names if name.lower() not in cls.model_fields}
        assert not unknown, f"{service}/{container['name']} has no setting for {sorted(unknown)}"
        assert all(name == name.upper() for name in env)
        known = {n.lower(): v for n, v in env.items() if n in names and isinstance(v, str)}
        cls.model_validate(known)


@pytest.mark.parametrize("service", list(SERVICES))
def test_required_settings_are_set(rendered: Rendered, service: str) -> None:
    """Every setting a deployment needs is set, from a value, a ConfigMap or a Secret."""
    env = rendered.env(app_container(rendered, service))
    missing = required_settings(service) - set(env)
    assert not missing, f"{service} lacks {sorted(missing)}"
    coordination = {rendered.env(app_container(rendered, s))["COORDINATION"] for s in SERVICES}
    assert len(coordination) == 1, "COORDINATION must be the same on all four"


def test_credentials_come_from_secrets(rendered: Rendered) -> None:
    """DATABASE_URL, API_KEYS, SERVICE_TOKEN, BROKER_URL and SMTP_URL are never plain values."""
    secret = {"DATABASE_URL", "API_KEYS", "SERVICE_TOKEN", "BROKER_URL", "SMTP_URL"}
    for workload in rendered.workloads():
        for container in all_containers(workload):
            for entry in container.get("env", []):
                if entry["name"] in secret:
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (
                        workload["metadata"]["name"],
                        entry["name"],
                    )
    for configmap in rendered.of_kind("ConfigMap"):
        assert not secret & set(configmap.get("data", {})), configmap["metadata"]["name"]


def test_every_reference_names_a_rendered_object_or_a_documented_secret(
    rendered: Rendered,
) -> None:
    """ConfigMaps and Secrets that pods read exist (or are the operator's, documented)."""
    for workload in rendered.workloads():
        spec = pod_spec(workload)
        for container in all_containers(workload):
            rendered.env(container)  # asserts each reference
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert rendered.config_data(volume["configMap"]["name"]) is not None, volume
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                assert rendered.secret_data(name) is not None or rendered.external(name), volume
    rendered_secrets = {s["metadata"]["name"] for s in rendered.of_kind("Secret")}
    for name in EXTERNAL_SECRETS[rendered.overlay]:
        assert name not in rendered_secrets, f"{name} is the operator's: it must not be rendered"


def test_each_service_uses_its_own_postgres_database(rendered: Rendered) -> None:
    """DATABASE_URL names PostgreSQL and the service's own database; the migration reads the same."""
    references = set()
    for service in SERVICES:
        deployment = rendered.deployment(service)
        (entry,) = [
            e for e in app_container(rendered, service)["env"] if e["name"] == "DATABASE_URL"
        ]
        references.add(repr(entry["valueFrom"]))
        for init in pod_spec(deployment).get("initContainers", []):
            (init_entry,) = [e for e in init["env"] if e["name"] == "DATABASE_URL"]
            assert init_entry == entry, f"{service}: the migration must upgrade the same database"
        url = rendered.env(app_container(rendered, service))["DATABASE_URL"]
        if isinstance(url, External):
            assert url.key == f"{service}-database-url"
            continue
        assert not is_sqlite(url), "replicas never run on SQLite"
        normalize_url(url, asynchronous=False)
        parsed = urlsplit(url)
        assert parsed.scheme.startswith("postgresql")
        assert parsed.path == f"/{service}", url
    assert len(references) == len(SERVICES), "one DATABASE_URL per service"


def test_orchestrator_reaches_the_services_by_their_service_names(rendered: Rendered) -> None:
    """EMAIL_URL, WAREHOUSE_URL and REWARDS_URL are http://NAME:PORT of the services' Services."""
    env = rendered.env(app_container(rendered, "orchestrator"))
    for service in ("email", "warehouse", "rewards"):
        port = SERVICES[service].port
        assert env[f"{service.upper()}_URL"] == f"http://{service}:{port}"
        assert port in [p["port"] for p in rendered.get("Service", service)["spec"]["ports"]]


def test_migrations_run_before_each_version_serves(rendered: Rendered) -> None:
    """An initContainer runs `checkout-suite migrate NAME` (a command of the CLI) in each pod."""
    commands = {c.name or c.callback.__name__ for c in cli_app.registered_commands if c.callback}
    assert "migrate" in commands
    for service in SERVICES:
        inits = pod_spec(rendered.deployment(service)).get("initContainers", [])
        migrations = [
            c for c in inits if c.get("command") == ["checkout-suite", "migrate", service]
        ]
        assert len(migrations) == 1, service
        assert not migrations[0].get("args")


def matched_name(rendered: Rendered, service: dict[str, Any]) -> str:
    (workload,) = [
        w for w in rendered.workloads() if selects(service["spec"]["selector"], pod_labels(w))
    ]
    name: str = workload["metadata"]["name"]
    return name


def test_services_select_their_workloads_pods_and_ports(rendered: Rendered) -> None:
    """Every Service selects one workload's pods and targets a port its containers expose."""
    workloads = rendered.workloads()
    for service in rendered.of_kind("Service"):
        selector = service["spec"]["selector"]
        matched = [w for w in workloads if selects(selector, pod_labels(w))]
        assert len(matched) == 1, service["metadata"]["name"]
        containers = pod_spec(matched[0])["containers"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(
                target in [p.get("name"), p["containerPort"]]
                for c in containers
                for p in c.get("ports", [])
            ), (service["metadata"]["name"], target)
    for name, spec in SERVICES.items():
        ports = rendered.get("Service", name)["spec"]["ports"]
        assert [p["port"] for p in ports] == [spec.port]
        assert matched_name(rendered, rendered.get("Service", name)) == name


def test_prometheus_scrapes_every_pod_on_its_metrics_port(rendered: Rendered) -> None:
    """Pod annotations: scrape, /metrics, and a port the container exposes (each replica counts)."""
    for service, spec in SERVICES.items():
        annotations = rendered.deployment(service)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == METRICS_PATH
        port = resolve_port(app_container(rendered, service), annotations["prometheus.io/port"])
        assert port == spec.port


def test_containers_run_locked_down(rendered: Rendered) -> None:
    """Non-root (the Dockerfile's uid), no capabilities, no escalation; the suite's root read-only."""
    useradd = " ".join(v for k, v in dockerfile_instructions() if k == "RUN")
    assert f"--uid {APP_UID}" in useradd, DOCKERFILE
    for workload in rendered.workloads():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert spec.get("enableServiceLinks") is False, "no <SERVICE>_PORT variables"
        for container in all_containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "add" not in context["capabilities"]
            assert not context.get("privileged")
    for service in SERVICES:
        deployment = rendered.deployment(service)
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsUser"] == APP_UID
        assert spec.get("automountServiceAccountToken") is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in all_containers(deployment):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp"


def test_every_container_has_requests_and_limits(rendered: Rendered) -> None:
    """CPU and memory requests and limits on every container, init containers included."""
    for workload in rendered.workloads():
        for container in all_containers(workload):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), container["name"]


def test_production_runs_more_replicas_and_larger_resources(
    dev: Rendered, production: Rendered
) -> None:
    """Production scales every service out and gives its containers more room than dev."""
    for service in SERVICES:
        assert production.deployment(service)["spec"]["replicas"] >= 2
        assert (
            production.deployment(service)["spec"]["replicas"]
            >= dev.deployment(service)["spec"]["replicas"]
        )
        small = app_container(dev, service)["resources"]["limits"]["memory"]
        large = app_container(production, service)["resources"]["limits"]["memory"]
        assert mebibytes(large) > mebibytes(small), service
    assert production.deployment("orchestrator")["spec"]["replicas"] > 2


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_dev_postgres_keeps_its_data_and_creates_the_four_databases(dev: Rendered) -> None:
    """One PostgreSQL StatefulSet with a volume; its init script is deploy/postgres's, four databases."""
    statefulset = dev.get("StatefulSet", "postgres")
    assert statefulset["spec"]["replicas"] == 1
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (container,) = pod_spec(statefulset)["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/postgresql/data"] == claim["metadata"]["name"]
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    init = dev.config_data(volumes[mounts["/docker-entrypoint-initdb.d"]]["configMap"]["name"])
    assert init == {"init-databases.sql": INIT_SQL.read_text()}
    assert (KUBERNETES / "overlays" / "dev" / "init-databases.sql").read_bytes() == (
        INIT_SQL.read_bytes()
    ), "the dev overlay's copy must stay the same as deploy/postgres/init-databases.sql"
    assert set(re.findall(r"CREATE DATABASE (\w+);", INIT_SQL.read_text())) == set(SERVICES)
    credentials = dev.env(container)
    for service in SERVICES:
        url = urlsplit(str(dev.env(app_container(dev, service))["DATABASE_URL"]))
        assert (url.hostname, url.port) == ("postgres", 5432)
        assert url.username == credentials["POSTGRES_USER"]
        assert url.password == credentials["POSTGRES_PASSWORD"]
    assert 5432 in [p["port"] for p in dev.get("Service", "postgres")["spec"]["ports"]]


def test_dev_reaches_its_broker_and_mailpit(dev: Rendered) -> None:
    """BROKER_URL has RabbitMQ's user and password; SMTP_URL is Mailpit's SMTP port."""
    (rabbitmq,) = pod_spec(dev.get("Deployment", "rabbitmq"))["containers"]
    broker = dev.env(rabbitmq)
    user, password = broker["RABBITMQ_DEFAULT_USER"], broker["RABBITMQ_DEFAULT_PASS"]
    for service in SERVICES:
        url = dev.env(app_container(dev, service))["BROKER_URL"]
        assert url == f"amqp://{user}:{password}@rabbitmq:5672/", service
    assert 5672 in [p["port"] for p in dev.get("Service", "rabbitmq")["spec"]["ports"]]
    assert dev.env(app_container(dev, "email"))["SMTP_URL"] == "smtp://mailpit:1025"
    assert 1025 in [p["port"] for p in dev.get("Service", "mailpit")["spec"]["ports"]]
    assert dev.env(app_container(dev, "warehouse"))["SEED_DEMO_CATALOG"] == "true"


def test_production_expects_its_externals_and_documents_the_secret(production: Rendered) -> None:
    """No database, broker, mail server or Secret in production; README lists the Secret's keys."""
    assert {w["metadata"]["name"] for w in production.workloads()} == set(SERVICES)
    assert not production.of_kind("Secret")
    assert not production.of_kind("PersistentVolumeClaim")
    assert production.env(app_container(production, "warehouse"))["SEED_DEMO_CATALOG"] == "false"
    section = kubernetes_section()
    for secret, keys in EXTERNAL_SECRETS["production"].items():
        assert f"`{secret}`" in section
        for key in keys:
            assert f"`{key}`" in section, f"README.md does not document {secret}'s key {key}"
    assert "kubectl apply -k deploy/kubernetes/overlays/dev" in section
    assert "kubectl apply -k deploy/kubernetes/overlays/production" in section
