"""deploy/chart: linted and rendered with default, production and dev values by a real helm binary
(scripts/fetch-tools.sh puts it in .tools/bin), every manifest checked against the Kubernetes schemas, and
what makes it safe to run asserted: least-privilege RBAC, probes, security contexts, autoscaling, network
policies, disruption budgets. test_deploy_examples.py covers deploy/examples, the Dockerfile, tools."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "chart"
EXAMPLES = REPO / "deploy" / "examples"
K8S_VERSION = "1.31.0"
NAMESPACE = "platform-broker"
# Custom resources: no schema in kubernetes-validate, so their key fields are asserted by the tests instead.
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication"}
SCENARIOS: dict[str, tuple[str, ...]] = {
    "default": (),
    "production": ("values-production.yaml",),
    "production+ingress": ("values-production.yaml", "values-public-ingress.yaml"),
    "dev": ("values-dev.yaml",),
    "dev+keda": ("values-dev.yaml",),
}
SCENARIO_SETS: dict[str, tuple[str, ...]] = {
    "dev+keda": ("worker.autoscaling.keda.enabled=true", "networkPolicy.enabled=true"),
}
Manifest = dict[str, Any]


def helm_bin() -> str:
    path = os.environ.get("HELM_BIN") or str(REPO / ".tools" / "bin" / "helm")
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm not found at {path}: run scripts/fetch-tools.sh (or set HELM_BIN)")
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120, check=False)


def value_args(scenario: str) -> list[str]:
    files = [arg for name in SCENARIOS[scenario] for arg in ("-f", str(EXAMPLES / name))]
    return files + [arg for value in SCENARIO_SETS.get(scenario, ()) for arg in ("--set", value)]


@functools.cache
def render(scenario: str) -> tuple[Manifest, ...]:
    done = helm(
        "template",
        "broker",
        str(CHART),
        "-n",
        NAMESPACE,
        "--kube-version",
        K8S_VERSION,
        *value_args(scenario),
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def objects(scenario: str, kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in render(scenario) if doc["kind"] == kind}


def one(scenario: str, kind: str, suffix: str = "") -> Manifest:
    found = [doc for name, doc in objects(scenario, kind).items() if name.endswith(suffix)]
    assert len(found) == 1, (
        f"{scenario}: expected one {kind} *{suffix}, got {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def container(workload: Manifest) -> Manifest:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(workload: Manifest) -> dict[str, Manifest]:
    return {item["name"]: item for item in container(workload).get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- helm lint and schema validation ----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_lints_clean(scenario: str) -> None:
    done = helm("lint", "--strict", str(CHART), *value_args(scenario))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_is_valid_kubernetes(scenario: str) -> None:
    docs = render(scenario)
    assert {"Deployment", "Service", "ConfigMap", "Role", "RoleBinding", "ServiceAccount"} <= {
        d["kind"] for d in docs
    }
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "webhook-broker", name
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{scenario}: {name}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"redis.mode": "external"}, "set secrets.existingSecret"),
        ({"secrets.existingSecret": "s", "secrets.create": "true"}, "not both"),
        ({"config.BROKER_PORT": "9000"}, "config.BROKER_PORT is set by the chart"),
        (
            {
                "redis.mode": "external",
                "secrets.existingSecret": "s",
                "worker.autoscaling.keda.enabled": "true",
            },
            "needs redis.external.address",
        ),
        ({"rbac.gitCredentialSecrets[0]": "*"}, "gitCredentialSecrets"),
        ({"webb.port": "1"}, "Additional property webb is not allowed"),
    ],
)
def test_inconsistent_values_are_refused(values: dict[str, str], error: str) -> None:
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    done = helm("template", "broker", str(CHART), *sets)
    assert done.returncode != 0
    assert error in done.stderr


# --- RBAC ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_is_namespaced_least_privilege(scenario: str) -> None:
    kinds = {doc["kind"] for doc in render(scenario)}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    role, binding = one(scenario, "Role"), one(scenario, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "argocd"
    assert one(scenario, "ConfigMap")["data"]["BROKER_ARGOCD_NAMESPACE"] == "argocd"
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert not any("*" in item for item in rule.get(field, [])), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants[(group, resource)] = set(rule["verbs"])
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"] and rule["resourceNames"], "secrets only by name, read only"
    assert grants.pop(("argoproj.io", "applications")) == {"get", "list", "watch", "patch", "update"}
    assert grants.pop(("argocd-image-updater.argoproj.io", "imageupdaters")) == {"get", "list", "watch"}
    secret_rules = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    if scenario.startswith("production"):
        assert grants.pop(("", "secrets")) == {"get"}
        assert secret_rules[0]["resourceNames"] == ["team-demo-gitea-repo-creds", "team-dev-gitea-repo-creds"]
    assert grants == {}, f"unexpected grants {grants}"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    sa = one(scenario, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    for deployment in objects(scenario, "Deployment").values():
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


# --- pods: probes, security, resources --------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_web_probes_hit_health_endpoints(scenario: str) -> None:
    web_container = container(one(scenario, "Deployment", "-web"))
    assert web_container["args"] == ["web"]
    assert container(one(scenario, "Deployment", "-worker"))["args"] == ["worker"]
    ports = {port["name"]: port["containerPort"] for port in web_container["ports"]}
    assert ports == {"http": 8080}
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        assert web_container[probe]["httpGet"] == {"path": path, "port": "http"}
    config = one(scenario, "ConfigMap")["data"]
    assert config["BROKER_HOST"] == "0.0.0.0" and config["BROKER_PORT"] == "8080"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_run_non_root_read_only_without_capabilities(scenario: str) -> None:
    pods = [
        doc["spec"]["template"]["spec"]
        for doc in render(scenario)
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]
    pods += [doc["spec"] for doc in render(scenario) if doc["kind"] == "Pod"]
    assert len(pods) >= 2
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for item in pod["containers"]:
            security = item["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert item["resources"]["requests"] and item["resources"]["limits"]["memory"]
            mounts = {mount["mountPath"]: mount["name"] for mount in item.get("volumeMounts", [])}
            if pod.get("restartPolicy") != "Never":  # the helm test pod writes nothing
                assert "emptyDir" in volumes[mounts["/tmp"]]
    for suffix in ("-web", "-worker"):
        pod = one(scenario, "Deployment", suffix)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 10001
    web_pod = one(scenario, "Deployment", "-web")["spec"]["template"]["spec"]
    worker_pod = one(scenario, "Deployment", "-worker")["spec"]["template"]["spec"]
    assert web_pod["automountServiceAccountToken"] is False, "the web never calls the Kubernetes API"
    assert worker_pod["automountServiceAccountToken"] is True


# --- scaling and disruption ---------------------------------------------------------------------------------


def cpu_target(hpa: Manifest) -> int:
    [cpu] = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    return int(cpu["resource"]["target"]["averageUtilization"])


def test_default_hpas_scale_web_and_worker_on_cpu() -> None:
    web_hpa = one("default", "HorizontalPodAutoscaler", "-web")
    worker_hpa = one("default", "HorizontalPodAutoscaler", "-worker")
    deployments = objects("default", "Deployment")
    for hpa, suffix, target in ((web_hpa, "-web", 70), (worker_hpa, "-worker", 75)):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"].endswith(suffix) and ref["name"] in deployments
        assert cpu_target(hpa) == target and len(hpa["spec"]["metrics"]) == 1
        assert "replicas" not in deployments[ref["name"]]["spec"], "the HPA owns replicas"
    assert (web_hpa["spec"]["minReplicas"], web_hpa["spec"]["maxReplicas"]) == (2, 10)


def test_production_scales_web_on_request_rate_and_worker_on_queue_length() -> None:
    web_hpa = one("production", "HorizontalPodAutoscaler", "-web")
    [pods_metric] = [m["pods"] for m in web_hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metric["metric"]["name"] == "broker_webhooks_received_per_second"
    assert pods_metric["target"] == {"type": "AverageValue", "averageValue": "25"}
    assert cpu_target(web_hpa) == 70
    assert not objects("production", "HorizontalPodAutoscaler").keys() - {web_hpa["metadata"]["name"]}
    scaled = one("production", "ScaledObject")
    worker = one("production", "Deployment", "-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 10)
    redis_triggers = [t for t in scaled["spec"]["triggers"] if t["type"] == "redis"]
    assert [t["metadata"]["listName"] for t in redis_triggers] == [
        "rq:queue:broker",
        "rq:queue:broker-notify",
    ]
    auth = one("production", "TriggerAuthentication")
    for trigger in redis_triggers:
        assert trigger["metadata"]["address"] == "broker-redis-haproxy.platform-broker.svc:6379"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "webhook-broker-secrets", "key": "REDIS_PASSWORD"}
    ]
    assert {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "75"}} in scaled["spec"][
        "triggers"
    ]


def test_dev_runs_fixed_single_replicas() -> None:
    assert not objects("dev", "HorizontalPodAutoscaler") and not objects("dev", "ScaledObject")
    assert {d["spec"]["replicas"] for d in objects("dev", "Deployment").values()} == {1}
    assert not objects("dev", "PodDisruptionBudget") and not objects("dev", "NetworkPolicy")


@pytest.mark.parametrize("scenario", ["default", "production"])
def test_disruption_budgets_cover_web_and_worker(scenario: str) -> None:
    pdbs = objects(scenario, "PodDisruptionBudget")
    for suffix in ("-web", "-worker"):
        labels = one(scenario, "Deployment", suffix)["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in pdbs.values() if matches(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1 and covering[0]["spec"]["maxUnavailable"] == 1


# --- network ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["default", "production", "production+ingress"])
def test_network_policies_admit_only_configured_sources(scenario: str) -> None:
    policies = objects(scenario, "NetworkPolicy")
    workloads = [d for d in render(scenario) if d["kind"] in ("Deployment", "StatefulSet")]
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(matches(p["spec"]["podSelector"]["matchLabels"], labels) for p in policies.values()), (
            labels
        )
    web_policy = next(p for name, p in policies.items() if name.endswith("-web"))
    [rule] = web_policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
        if "namespaceSelector" in peer
    }
    expected = {
        "default": {"ingress-nginx", "monitoring"},
        "production": {"gitea", "harbor", "drone", "monitoring", "istio-system"},
        "production+ingress": {"ingress-nginx", "gitea", "harbor", "drone", "monitoring"},
    }[scenario]
    assert namespaces == expected
    assert all("ipBlock" not in peer for peer in rule["from"])
    worker_policy = next(p for name, p in policies.items() if name.endswith("-worker"))
    assert worker_policy["spec"]["policyTypes"] == ["Ingress"] and worker_policy["spec"]["ingress"] == []


def test_bundled_redis_is_reachable_only_from_the_broker_and_keeps_an_aof() -> None:
    redis_policy = one("default", "NetworkPolicy", "-redis")
    [rule] = redis_policy["spec"]["ingress"]
    components = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]}
    assert components == {"web", "worker"} and len(rule["from"]) == 2
    redis_set = one("dev", "StatefulSet")
    args = container(redis_set)["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert redis_set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    service = one("dev", "Service", "-redis")
    url = env_of(one("dev", "Deployment", "-worker"))["BROKER_REDIS_URL"]["value"]
    assert url == f"redis://:$(REDIS_PASSWORD)@{service['metadata']['name']}:6379/0"
    assert one("dev", "Secret")["stringData"]["REDIS_PASSWORD"] == "devredispassword"


def test_keda_on_the_bundled_redis_uses_its_service_password_and_network_policy() -> None:
    scaled, auth = one("dev+keda", "ScaledObject"), one("dev+keda", "TriggerAuthentication")
    service, secret = one("dev+keda", "Service", "-redis"), one("dev+keda", "Secret")
    for trigger in (t for t in scaled["spec"]["triggers"] if t["type"] == "redis"):
        assert trigger["metadata"]["address"] == f"{service['metadata']['name']}.{NAMESPACE}.svc:6379"
    assert auth["spec"]["secretTargetRef"][0]["name"] == secret["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"][0]["key"] == "REDIS_PASSWORD"
    [rule] = one("dev+keda", "NetworkPolicy", "-redis")["spec"]["ingress"]
    keda_peers = [peer for peer in rule["from"] if "namespaceSelector" in peer]
    assert keda_peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}]


@pytest.mark.parametrize("scenario", ["production", "production+ingress"])
def test_production_reads_every_secret_from_the_existing_secret(scenario: str) -> None:
    assert not objects(scenario, "Secret") and not objects(scenario, "StatefulSet")
    for suffix in ("-web", "-worker"):
        env = env_of(one(scenario, "Deployment", suffix))
        for name in (
            "BROKER_GITEA_SECRET",
            "BROKER_DRONE_SECRET",
            "BROKER_HARBOR_AUTH",
            "BROKER_ADMIN_TOKEN",
            "BROKER_ARGOCD_TOKEN",
            "BROKER_HARBOR_API_CREDENTIALS",
            "BROKER_REDIS_URL",
        ):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == ("webhook-broker-secrets", name)
            # Without the URL a pod would fall back to a private embedded Redis: refuse to start instead.
            assert ref["optional"] is (name != "BROKER_REDIS_URL")


def test_service_monitor_and_ingress_point_at_the_web_service() -> None:
    service = one("production+ingress", "Service")
    web_labels = one("production+ingress", "Deployment", "-web")["spec"]["template"]["metadata"]["labels"]
    assert matches(service["spec"]["selector"], web_labels)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    monitor = one("production+ingress", "ServiceMonitor")
    assert monitor["metadata"]["labels"]["prometheus"] == "system"
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    ingress = one("production+ingress", "Ingress")
    assert ingress["spec"]["tls"] == [{"secretName": "webhook-broker-tls", "hosts": ["broker.example.com"]}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "broker.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/hooks",
            "pathType": "Prefix",
            "backend": {"service": {"name": service["metadata"]["name"], "port": {"name": "http"}}},
        }
    ]
    assert not objects("production", "Ingress") and not objects("default", "ServiceMonitor")


@pytest.mark.parametrize("scenario", ["default", "production"])
def test_worker_is_probed_on_its_health_port(scenario: str) -> None:
    worker = container(one(scenario, "Deployment", "-worker"))
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert env_of(one(scenario, "Deployment", "-worker"))["BROKER_WORKER_HEALTH_PORT"]["value"] == str(
        ports["health"]
    )
