"""The Kubernetes manifests: rendered, validated offline against the Kubernetes schemas, and
checked against the code they deploy.

Every overlay under k8s/overlays is rendered with ``kubectl kustomize`` (kubectl must be installed:
the test fails, it does not skip, without it). Each object is validated with kubernetes-validate in
strict mode (unknown fields are errors) against the oldest and the newest Kubernetes version we
support. Then the manifests are checked against the code: commands are console scripts of
pyproject.toml, ports are tessera/config.py's constants, every TESSERA_* variable is a config field
and the whole environment of each node loads with tessera.config.load(), Services and
NetworkPolicies connect exactly the parts DESIGN.md says, the block nodes' zones, and so on.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tessera import config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = sorted(
    p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists()
)
# The oldest Kubernetes we support (docs/deploy.md: the manifests use the preStop `sleep` action
# and matchLabelKeys) and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ["1.32", kubernetes_validate.latest_version()]
NAMESPACE = "tessera"
PROBE_SCRIPT = K8S / "base" / "grpc_health_probe.py"

# kubernetes-validate re-reads its JSON schemas (megabytes) for every object it validates; the
# files never change, so read each once (10x faster, keeps this module well under its time budget).
kubernetes_validate.utils.schema_contents = functools.cache(
    kubernetes_validate.utils.schema_contents
)

NODE_CLASSES: tuple[type[config.NodeConfig], ...] = (
    config.BlockConfig,
    config.MetaConfig,
    config.SyncConfig,
)
KIND_PORTS = {"block": config.BLOCK_PORT, "meta": config.META_PORT, "sync": config.SYNC_PORT}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "PriorityClass"}
FAKE_FIELDS = {
    "metadata.name": "tessera-block-a-0",
    "metadata.namespace": NAMESPACE,
    "status.podIP": "10.1.2.3",
}


# --------------------------------------------------------------------------- helpers


def _kind_of(cls: type[config.NodeConfig]) -> str:
    return next(f.default for f in dataclasses.fields(cls) if f.name == "kind")


SCRIPT_CLASSES = {_kind_of(cls) + "node": cls for cls in NODE_CLASSES}


def env_names(cls: type[config.NodeConfig]) -> set[str]:
    """The TESSERA_* variables a config class reads (its init fields; ``kind`` is not one)."""
    return {config.ENV_PREFIX + f.name.upper() for f in dataclasses.fields(cls) if f.init}


def console_scripts() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def kubectl() -> str:
    path = shutil.which("kubectl") or (
        "/usr/bin/kubectl" if os.access("/usr/bin/kubectl", os.X_OK) else None
    )
    if path is None:
        pytest.fail(
            "kubectl is not installed, so the Kubernetes manifests cannot be rendered "
            "(`kubectl kustomize`). Install kubectl >= 1.27 (kustomize v5) and re-run.",
            pytrace=False,
        )
    return path


@functools.cache
def render(path: Path) -> tuple[dict[str, Any], ...]:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        pytest.fail(f"`kubectl kustomize {path}` failed:\n{proc.stderr}", pytrace=False)
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(objs, *kinds: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in kinds]


def get(objs, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]


def containers(pod_spec: dict[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", []) if init else []) + list(pod_spec["containers"])


def image_repo(image: str) -> str:
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def is_tessera(container: dict[str, Any]) -> bool:
    return image_repo(container["image"]) == "tessera"


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def tessera_nodes(objs) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """(workload, container, script) for every container running a Tessera console script."""
    out = []
    for w in of_kind(objs, *WORKLOAD_KINDS):
        for c in containers(pod_template(w)["spec"]):
            if is_tessera(c) and c.get("command") != ["tessera-web"]:  # a client, not a node
                assert c.get("command"), (
                    f"{name_of(w)} container {c['name']}: set `command` (the image has no ENTRYPOINT)"
                )
                out.append((w, c, c["command"][0]))
    return out


def config_maps(objs) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objs, "ConfigMap")}


def container_env(objs, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would build it (fields and secrets faked)."""
    cms = config_maps(objs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"container {container['name']}: only configMapRef envFrom expected"
        assert ref["name"] in cms, (
            f"container {container['name']}: ConfigMap {ref['name']} is not in the manifests"
        )
        env.update({source.get("prefix", "") + k: v for k, v in cms[ref["name"]].items()})
    for var in container.get("env", []):
        if "value" in var:
            value = var["value"]
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value):
                assert ref in env, (
                    f"container {container['name']}: {var['name']} uses $({ref}) before it is defined"
                )
                value = value.replace(f"$({ref})", env[ref])
            env[var["name"]] = value
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = FAKE_FIELDS[var["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = "s" * 32
        elif "resourceFieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = "1"
        else:
            raise AssertionError(f"container {container['name']}: unexpected env source {var}")
    return env


def named_ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def mounted_file(
    objs, pod_spec: dict[str, Any], container: dict[str, Any], path: str
) -> tuple[str, str, str]:
    """Which (kind, name, key) of a Secret/ConfigMap volume provides ``path`` in the container."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix) :]
        volume = next(v for v in pod_spec.get("volumes", []) if v["name"] == mount["name"])
        for kind, field, ref in (
            ("Secret", "secret", "secretName"),
            ("ConfigMap", "configMap", "name"),
        ):
            if field in volume:
                src = volume[field]
                items = src.get("items")
                key = next((i["key"] for i in items if i["path"] == rel), None) if items else rel
                assert key is not None, (
                    f"{path}: no item of volume {volume['name']} is mounted as {rel}"
                )
                get(objs, kind, src[ref])  # the Secret/ConfigMap exists
                return kind, src[ref], key
        raise AssertionError(f"{path}: volume {volume['name']} is neither a Secret nor a ConfigMap")
    raise AssertionError(f"{path}: no volume is mounted there in container {container['name']}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def objs(overlay: str) -> tuple[dict[str, Any], ...]:
    return render(K8S / "overlays" / overlay)


def test_there_are_dev_and_prod_overlays():
    assert {"dev", "prod"} <= set(OVERLAYS)


# --------------------------------------------------------------------------- rendering and schemas


def test_overlay_renders_into_one_namespace(objs):
    assert objs, "the overlay rendered nothing"
    seen = set()
    for o in objs:
        key = (o["kind"], o["metadata"]["name"])
        assert key not in seen, f"{name_of(o)} rendered twice"
        seen.add(key)
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"].get("namespace") == NAMESPACE, (
                f"{name_of(o)} is not in namespace {NAMESPACE}"
            )
    ns = get(objs, "Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_every_object_is_valid_for_kubernetes(objs, k8s_version):
    errors = []
    for o in objs:
        try:
            kubernetes_validate.validate(o, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            errors.append(f"{name_of(o)}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(
                f"{name_of(o)}: {e.message} (CRDs belong in k8s/components, not in an overlay)"
            )
    assert not errors, f"invalid for Kubernetes {k8s_version}:\n" + "\n".join(errors)


def test_the_base_and_block_statefulset_render_on_their_own():
    assert render(K8S / "base")
    assert of_kind(render(K8S / "base" / "block-statefulset"), "StatefulSet")


# --------------------------------------------------------------------------- commands, ports, config


def test_every_tessera_command_is_a_console_script(objs):
    scripts = console_scripts()
    nodes = tessera_nodes(objs)
    assert nodes
    for w, c, script in nodes:
        assert script in scripts, (
            f"{name_of(w)}: command {c['command']} is not a console script of pyproject.toml {sorted(scripts)}"
        )
        assert script in SCRIPT_CLASSES, (
            f"{name_of(w)}: {script} is not a node (no config class for it)"
        )
        # Flags on the command line must be flags of that node's config.
        flags = {
            "--" + f.name.replace("_", "-")
            for f in dataclasses.fields(SCRIPT_CLASSES[script])
            if f.init
        }
        for arg in c["command"][1:] + c.get("args", []):
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in flags, (
                    f"{name_of(w)}: {arg} is not a flag of {script}"
                )


def test_each_node_kind_runs_where_expected(objs):
    by_script: dict[str, set[str]] = {}
    for w, c, _ in tessera_nodes(objs):
        by_script.setdefault(" ".join(c["command"]), set()).add(w["kind"])
    assert by_script.get("blocknode") == {"StatefulSet"}
    assert by_script.get("metanode") == {"Deployment"}
    assert by_script.get("syncnode") == {"Deployment"}
    assert by_script.get("metanode --migrate-only") == {"Job"}, (
        "the migration Job runs `metanode --migrate-only`"
    )


def test_ports_are_the_config_constants(objs):
    checked = set()
    for w, c, script in tessera_nodes(objs):
        cls = SCRIPT_CLASSES[script]
        kind = _kind_of(cls)
        if "--migrate-only" in c["command"]:
            assert not c.get("ports"), "the migration Job serves nothing"
            continue
        expected = KIND_PORTS[kind]
        # The constant is also the class's default listen port: one source of truth.
        assert (
            hostport(next(f.default for f in dataclasses.fields(cls) if f.name == "listen"))[1]
            == expected
        )
        ports = named_ports(c)
        assert ports == {"grpc": expected, "metrics": config.METRICS_PORT}, (
            f"{name_of(w)}: container ports {ports}"
        )
        env = container_env(objs, c)
        assert env["TESSERA_LISTEN"] == f"0.0.0.0:{expected}", f"{name_of(w)}: TESSERA_LISTEN"
        assert hostport(env["TESSERA_ADVERTISE"])[1] == expected, f"{name_of(w)}: TESSERA_ADVERTISE"
        assert env["TESSERA_METRICS_LISTEN"] == f"0.0.0.0:{config.METRICS_PORT}"
        annotations = pod_template(w)["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", f"{name_of(w)}: not scraped"
        assert annotations.get("prometheus.io/port") == str(config.METRICS_PORT)
        for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(probe_name)
            assert probe, f"{name_of(w)}: no {probe_name}"
            assert probe_port(probe, c) == expected, (
                f"{name_of(w)}: {probe_name} probes another port"
            )
        checked.add(kind)
    assert checked == set(KIND_PORTS)


def probe_port(probe: dict[str, Any], container: dict[str, Any]) -> int:
    """The port a probe checks: grpc/httpGet/tcpSocket ports, or the port argument of our script."""
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            port = probe[kind]["port"]
            return named_ports(container)[port] if isinstance(port, str) else port
    argv = probe["exec"]["command"]
    assert argv[:2] == ["python", "/opt/tessera/probe/" + PROBE_SCRIPT.name], (
        f"unexpected exec probe {argv}"
    )
    return int(argv[2])


def test_readiness_needs_serving_liveness_only_an_answer(objs):
    for w, c, _ in tessera_nodes(objs):
        if "--migrate-only" in c["command"]:
            continue
        assert "--live" not in c["readinessProbe"]["exec"]["command"], (
            f"{name_of(w)}: readiness must require SERVING"
        )
        assert "--live" in c["livenessProbe"]["exec"]["command"], (
            f"{name_of(w)}: liveness must not depend on the database"
        )
        # The probe script is mounted from the tessera-probe ConfigMap.
        spec = pod_template(w)["spec"]
        kind, cm, key = mounted_file(objs, spec, c, c["readinessProbe"]["exec"]["command"][1])
        assert kind == "ConfigMap" and key == PROBE_SCRIPT.name
        assert config_maps(objs)[cm][key] == PROBE_SCRIPT.read_text()
        timeout = c["readinessProbe"]["timeoutSeconds"]
        assert timeout >= 5, "the exec probe starts a Python interpreter: give it time"


def test_every_tessera_env_var_is_a_config_field(objs):
    known_anywhere = set().union(*(env_names(cls) for cls in NODE_CLASSES))
    for w, c, script in tessera_nodes(objs):
        names = env_names(SCRIPT_CLASSES[script])
        for var in container_env(objs, c):
            if var.startswith(config.ENV_PREFIX):
                assert var in names, (
                    f"{name_of(w)}: {var} is not a field of {SCRIPT_CLASSES[script].__name__}"
                )
    for name, data in config_maps(objs).items():
        for key in data:
            if key.startswith(config.ENV_PREFIX):
                assert key in known_anywhere, f"ConfigMap {name}: {key} is no config field at all"


def test_every_node_environment_loads_and_validates(objs):
    """Each node's environment, as Kubernetes would give it, passes tessera.config.load()."""
    for w, c, script in tessera_nodes(objs):
        cls = SCRIPT_CLASSES[script]
        env = container_env(objs, c)
        leftover = [k for k, v in env.items() if "$(" in v]
        assert not leftover, f"{name_of(w)}: unresolved $(...) in {leftover}"
        try:
            cfg = config.load(
                cls, c["command"][1:] + c.get("args", []), prog=script, description="", environ=env
            )
        except config.ConfigError as e:
            pytest.fail(f"{name_of(w)}: {script} would refuse its config: {e}")
        if not getattr(cfg, "migrate_only", False):
            assert env.get("TESSERA_CLUSTER_SECRET"), f"{name_of(w)}: no cluster secret"
            secret_var = next(v for v in c["env"] if v["name"] == "TESSERA_CLUSTER_SECRET")
            ref = secret_var["valueFrom"]["secretKeyRef"]
            assert (
                ref["key"]
                in get(objs, "Secret", ref["name"])["metadata"]["annotations"][
                    "tessera.io/keys"
                ].split()
            )
            # TLS is always on in Kubernetes (DESIGN.md, Security): the files are mounted.
            for var in ("TESSERA_TLS_CERT", "TESSERA_TLS_KEY", "TESSERA_TLS_CA"):
                kind, secret, key = mounted_file(objs, pod_template(w)["spec"], c, env[var])
                assert (
                    kind == "Secret"
                    and key
                    in get(objs, kind, secret)["metadata"]["annotations"]["tessera.io/keys"].split()
                )


def test_etcd_endpoint_is_a_service_over_every_member(objs):
    """The node's etcd client uses only the first endpoint (tessera/membership.py), so
    TESSERA_ETCD is one Service that load-balances over the etcd members: losing a member then
    costs a reconnect, not etcd itself."""
    etcd = get(objs, "StatefulSet", "etcd")
    etcd_labels = pod_template(etcd)["metadata"]["labels"]
    client_port = named_ports(pod_template(etcd)["spec"]["containers"][0])["client"]
    for w, c, _ in tessera_nodes(objs):
        env = container_env(objs, c)
        if "TESSERA_ETCD" not in env:
            continue
        endpoints = config.NodeConfig(etcd=env["TESSERA_ETCD"]).etcd_endpoints()
        assert len(endpoints) == 1, f"{name_of(w)}: only the first of {endpoints} would be used"
        host, port = endpoints[0]
        service_name, namespace = host.split(".")[:2]
        assert namespace == NAMESPACE, f"{name_of(w)}: TESSERA_ETCD {host}"
        service = get(objs, "Service", service_name)
        assert service["spec"].get("clusterIP") != "None", "a headless name would pin one member"
        assert selects({"matchLabels": service["spec"]["selector"]}, etcd_labels)
        ports = {p["port"]: p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
        assert ports.get(port) in {client_port, "client"}, f"{name_of(service)} port {port}"
    peers = next(
        v["value"]
        for v in pod_template(etcd)["spec"]["containers"][0]["env"]
        if v["name"] == "ETCD_INITIAL_CLUSTER"
    )
    headless = etcd["spec"]["serviceName"]
    expected = {
        f"{etcd['metadata']['name']}-{i}=http://{etcd['metadata']['name']}-{i}.{headless}.{NAMESPACE}.svc.cluster.local:2380"
        for i in range(etcd["spec"]["replicas"])
    }
    assert set(peers.split(",")) == expected, "ETCD_INITIAL_CLUSTER must list every member"


def test_database_and_meta_addresses_resolve_to_services(objs):
    for w, c, script in tessera_nodes(objs):
        env = container_env(objs, c)
        spec = pod_template(w)["spec"]
        if "TESSERA_DB" in env and script == "metanode":
            dsn = urlsplit(env["TESSERA_DB"])
            service = get(objs, "Service", dsn.hostname.split(".")[0])
            assert dsn.port in {p["port"] for p in service["spec"]["ports"]}
            query = parse_qs(dsn.query)
            assert query["sslmode"] == ["verify-full"]
            for param in ("sslrootcert", "sslcert", "sslkey"):
                kind, secret, key = mounted_file(objs, spec, c, query[param][0])
                assert (
                    key
                    in get(objs, kind, secret)["metadata"]["annotations"]["tessera.io/keys"].split()
                )
        if script == "syncnode":
            host, port = hostport(env["TESSERA_META"])
            service = get(objs, "Service", host.split(".")[0])
            assert port == config.META_PORT and port in {
                p["port"] for p in service["spec"]["ports"]
            }
            assert selects(
                {"matchLabels": service["spec"]["selector"]},
                pod_template(get(objs, "Deployment", "tessera-meta"))["metadata"]["labels"],
            )


# --------------------------------------------------------------------------- services, PDBs, HPA


def test_every_service_target_port_is_a_container_port(objs):
    workloads = of_kind(objs, "Deployment", "StatefulSet")
    for svc in of_kind(objs, "Service"):
        selector = {"matchLabels": svc["spec"]["selector"]}
        backends = [
            w for w in workloads if selects(selector, pod_template(w)["metadata"]["labels"])
        ]
        assert backends, f"{name_of(svc)} selects no pods"
        for w in backends:
            ports = {}
            for c in pod_template(w)["spec"]["containers"]:
                ports.update(named_ports(c))
                ports.update({p["containerPort"]: p["containerPort"] for p in c.get("ports", [])})
            for p in svc["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                assert target in ports, (
                    f"{name_of(svc)} port {p['name']}: targetPort {target} is no container port of {name_of(w)}"
                )
    for w in of_kind(objs, "StatefulSet"):
        headless = get(objs, "Service", w["spec"]["serviceName"])
        assert headless["spec"]["clusterIP"] == "None", (
            f"{name_of(w)}: its serviceName must be headless"
        )
        assert selects(
            {"matchLabels": headless["spec"]["selector"]}, pod_template(w)["metadata"]["labels"]
        )


def test_no_service_selects_job_pods(objs):
    for svc in of_kind(objs, "Service"):
        for job in of_kind(objs, "Job"):
            assert not selects(
                {"matchLabels": svc["spec"]["selector"]}, pod_template(job)["metadata"]["labels"]
            ), f"{name_of(svc)} would route to {name_of(job)}"


def test_pdb_selects_the_block_statefulset_pods(objs):
    blocks = [
        w
        for w in of_kind(objs, "StatefulSet")
        if any(c.get("command") == ["blocknode"] for c in containers(pod_template(w)["spec"]))
    ]
    assert blocks
    pdbs = of_kind(objs, "PodDisruptionBudget")
    block_pdbs = [
        p
        for p in pdbs
        if all(
            selects(p["spec"]["selector"], pod_template(b)["metadata"]["labels"]) for b in blocks
        )
    ]
    assert len(block_pdbs) == 1, (
        "exactly one PodDisruptionBudget must cover every block StatefulSet's pods"
    )
    pdb = block_pdbs[0]
    assert pdb["spec"].get("maxUnavailable") == 1, (
        "one block node at a time keeps the W=2 quorum of every chunk"
    )
    for w in of_kind(objs, "Deployment", "StatefulSet"):
        if w not in blocks:
            assert not selects(pdb["spec"]["selector"], pod_template(w)["metadata"]["labels"]), (
                f"block PDB also selects {name_of(w)}"
            )
    for w in of_kind(objs, "Deployment", "StatefulSet"):
        assert any(
            selects(p["spec"]["selector"], pod_template(w)["metadata"]["labels"]) for p in pdbs
        ), f"{name_of(w)} has no PodDisruptionBudget"


def test_metanodes_autoscale(objs):
    hpa = get(objs, "HorizontalPodAutoscaler", "tessera-meta")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    deployment = get(objs, target["kind"], target["name"])
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == ["metanode"]
    assert "replicas" not in deployment["spec"], (
        "the HPA owns replicas; an applied value would fight it"
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert any(
        m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "cpu"
    ], "CPU utilisation needs a request"


# --------------------------------------------------------------------------- zones


def block_statefulsets(objs) -> list[dict[str, Any]]:
    return [
        w
        for w in of_kind(objs, "StatefulSet")
        if any(c.get("command") == ["blocknode"] for c in pod_template(w)["spec"]["containers"])
    ]


def block_zone(objs, sts: dict[str, Any]) -> str:
    c = next(
        c for c in pod_template(sts)["spec"]["containers"] if c.get("command") == ["blocknode"]
    )
    return container_env(objs, c)["TESSERA_ZONE"]


def test_block_nodes_have_persistent_volumes(objs):
    for sts in block_statefulsets(objs):
        c = next(
            c for c in pod_template(sts)["spec"]["containers"] if c.get("command") == ["blocknode"]
        )
        data_dir = container_env(objs, c)["TESSERA_DATA_DIR"]
        claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
        mounts = [m for m in c["volumeMounts"] if m["name"] in claims]
        assert any(data_dir.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts), (
            f"{name_of(sts)}: {data_dir} is not on a PVC"
        )


def test_prod_spreads_block_nodes_across_three_zones():
    objs = render(K8S / "overlays" / "prod")
    sets = block_statefulsets(objs)
    zones = {}
    for sts in sets:
        spec = pod_template(sts)["spec"]
        pinned = (spec.get("nodeSelector") or {}).get("topology.kubernetes.io/zone")
        assert pinned, f"{name_of(sts)}: not pinned to a zone"
        assert block_zone(objs, sts) == pinned, (
            f"{name_of(sts)}: TESSERA_ZONE differs from the zone it runs in"
        )
        assert sts["spec"]["replicas"] >= 1
        anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert any(t["topologyKey"] == "kubernetes.io/hostname" for t in anti), (
            f"{name_of(sts)}: two block nodes could share a machine"
        )
        zones[pinned] = zones.get(pinned, 0) + sts["spec"]["replicas"]
    assert len(zones) == 3, f"prod block nodes are in zones {sorted(zones)}"
    assert len(set(zones.values())) == 1, f"zones are unbalanced: {zones}"
    # The replicated control plane puts one member per zone.
    for name in ("etcd", "cockroachdb"):
        spread = pod_template(get(objs, "StatefulSet", name))["spec"]["topologySpreadConstraints"]
        assert any(
            t["topologyKey"] == "topology.kubernetes.io/zone"
            and t["whenUnsatisfiable"] == "DoNotSchedule"
            for t in spread
        ), name
    for name in ("tessera-meta", "tessera-sync"):
        spread = pod_template(get(objs, "Deployment", name))["spec"]["topologySpreadConstraints"]
        assert any(t["topologyKey"] == "topology.kubernetes.io/zone" for t in spread), name


def test_dev_is_one_zone_and_small():
    objs = render(K8S / "overlays" / "dev")
    sets = block_statefulsets(objs)
    assert sum(s["spec"]["replicas"] for s in sets) == 3, "dev runs three block nodes (RF=3)"
    assert len({block_zone(objs, s) for s in sets}) == 1
    assert get(objs, "StatefulSet", "etcd")["spec"]["replicas"] == 1
    assert get(objs, "StatefulSet", "cockroachdb")["spec"]["replicas"] == 1
    assert get(objs, "Deployment", "tessera-sync")["spec"]["replicas"] == 1
    assert get(objs, "HorizontalPodAutoscaler", "tessera-meta")["spec"]["minReplicas"] == 1


def test_block_config_holds_a_write_quorum_per_zone_loss():
    """prod: losing one whole zone still leaves W of RF replicas for every chunk."""
    objs = render(K8S / "overlays" / "prod")
    c = next(
        c
        for c in pod_template(block_statefulsets(objs)[0])["spec"]["containers"]
        if c.get("command") == ["blocknode"]
    )
    env = container_env(objs, c)
    replicas, quorum = int(env["TESSERA_REPLICAS"]), int(env["TESSERA_WRITE_QUORUM"])
    zones = len({block_zone(objs, s) for s in block_statefulsets(objs)})
    assert replicas - -(-replicas // zones) >= quorum


# --------------------------------------------------------------------------- network policies


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A traffic source or destination: a pod in some namespace (or a client outside the cluster)."""

    name: str
    namespace: str | None  # None: outside the cluster
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[str, int], ...] = ()

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def _peer_matches(peer: dict[str, Any], src: Endpoint) -> bool:
    if "ipBlock" in peer:
        return src.namespace is None
    if src.namespace is None:
        return False
    ns_labels = {"kubernetes.io/metadata.name": src.namespace}
    ns_ok = (
        selects(peer["namespaceSelector"], ns_labels)
        if "namespaceSelector" in peer
        else src.namespace == NAMESPACE
    )
    pod_ok = selects(peer["podSelector"], src.label_dict) if "podSelector" in peer else True
    return ns_ok and pod_ok


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, dst: Endpoint) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            want = dict(dst.ports).get(want)
        if want is not None and want <= port <= p.get("endPort", want):
            return True
    return False


def allowed(policies: list[dict[str, Any]], src: Endpoint, dst: Endpoint, port: int) -> bool:
    """NetworkPolicy semantics for one TCP connection from src to dst:port."""
    if src.namespace == NAMESPACE:
        egress = [
            p
            for p in policies
            if "Egress" in p["spec"]["policyTypes"]
            and selects(p["spec"]["podSelector"], src.label_dict)
        ]
        if egress and not any(
            (not rule.get("to") or any(_peer_matches(peer, dst) for peer in rule["to"]))
            and _port_matches(rule.get("ports"), port, dst)
            for p in egress
            for rule in p["spec"].get("egress", [])
        ):
            return False
    if dst.namespace == NAMESPACE:
        ingress = [
            p
            for p in policies
            if "Ingress" in p["spec"]["policyTypes"]
            and selects(p["spec"]["podSelector"], dst.label_dict)
        ]
        if ingress and not any(
            (not rule.get("from") or any(_peer_matches(peer, src) for peer in rule["from"]))
            and _port_matches(rule.get("ports"), port, dst)
            for p in ingress
            for rule in p["spec"].get("ingress", [])
        ):
            return False
    return True


def _endpoints(objs) -> dict[str, Endpoint]:
    out = {
        "client": Endpoint("client", None),
        "prometheus": Endpoint(
            "prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),)
        ),
        "stranger": Endpoint("stranger", "default", (("app", "curious"),)),
        "dns": Endpoint("dns", "kube-system", (("k8s-app", "kube-dns"),)),
    }
    for w in of_kind(objs, *WORKLOAD_KINDS):
        labels = pod_template(w)["metadata"]["labels"]
        key = (
            labels.get("app.kubernetes.io/component")
            if labels.get("app.kubernetes.io/name") == "tessera"
            else labels["app.kubernetes.io/name"]
        )
        ports: dict[str, int] = {}
        for c in containers(pod_template(w)["spec"]):
            ports.update(named_ports(c))
        out.setdefault(
            key,
            Endpoint(key, NAMESPACE, tuple(sorted(labels.items())), tuple(sorted(ports.items()))),
        )
    return out


def _port(objs, workload_kind: str, name: str, port_name: str) -> int:
    return named_ports(pod_template(get(objs, workload_kind, name))["spec"]["containers"][0])[
        port_name
    ]


def test_network_policies_cover_every_component(objs):
    policies = of_kind(objs, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}, (
        "no default-deny policy"
    )
    for w in of_kind(objs, *WORKLOAD_KINDS):
        labels = pod_template(w)["metadata"]["labels"]
        own = [
            p
            for p in policies
            if p["spec"]["podSelector"] != {} and selects(p["spec"]["podSelector"], labels)
        ]
        assert own, f"no NetworkPolicy of its own selects {name_of(w)}"


def test_network_policies_allow_exactly_the_design(objs):
    policies = of_kind(objs, "NetworkPolicy")
    ep = _endpoints(objs)
    etcd_client = _port(objs, "StatefulSet", "etcd", "client")
    etcd_peer = _port(objs, "StatefulSet", "etcd", "peer")
    etcd_metrics = _port(objs, "StatefulSet", "etcd", "metrics")
    crdb = _port(objs, "StatefulSet", "cockroachdb", "grpc")
    crdb_http = _port(objs, "StatefulSet", "cockroachdb", "http")
    block, meta, sync, metrics = (
        config.BLOCK_PORT,
        config.META_PORT,
        config.SYNC_PORT,
        config.METRICS_PORT,
    )
    allow = [
        ("client", "meta", meta),
        ("client", "block", block),
        ("client", "sync", sync),
        ("meta", "cockroachdb", crdb),
        ("meta", "etcd", etcd_client),
        ("meta", "sync", sync),
        ("meta", "block", block),
        ("block", "etcd", etcd_client),
        ("block", "block", block),
        ("sync", "etcd", etcd_client),
        ("sync", "meta", meta),
        ("migrate", "cockroachdb", crdb),
        ("cockroachdb-setup", "cockroachdb", crdb),
        ("etcd", "etcd", etcd_peer),
        ("etcd", "etcd", etcd_client),
        ("cockroachdb", "cockroachdb", crdb),
        ("prometheus", "block", metrics),
        ("prometheus", "meta", metrics),
        ("prometheus", "sync", metrics),
        ("prometheus", "etcd", etcd_metrics),
        ("prometheus", "cockroachdb", crdb_http),
    ] + [(name, "dns", 53) for name, e in ep.items() if e.namespace == NAMESPACE]
    deny = [
        ("client", "etcd", etcd_client),
        ("client", "cockroachdb", crdb),
        ("client", "block", metrics),
        ("stranger", "etcd", etcd_client),
        ("stranger", "cockroachdb", crdb),
        ("stranger", "meta", metrics),
        ("block", "cockroachdb", crdb),
        ("block", "meta", meta),
        ("block", "sync", sync),
        ("sync", "cockroachdb", crdb),
        ("sync", "block", block),
        ("migrate", "etcd", etcd_client),
        ("migrate", "block", block),
        ("etcd", "cockroachdb", crdb),
        ("cockroachdb", "etcd", etcd_client),
        ("meta", "etcd", etcd_peer),
        ("block", "etcd", etcd_peer),
        ("meta", "stranger", 443),
        ("block", "client", 443),
        ("prometheus", "etcd", etcd_client),
    ]
    wrong = [
        f"{s} -> {d}:{p} is blocked" for s, d, p in allow if not allowed(policies, ep[s], ep[d], p)
    ]
    wrong += [f"{s} -> {d}:{p} is open" for s, d, p in deny if allowed(policies, ep[s], ep[d], p)]
    assert not wrong, "NetworkPolicies disagree with the design:\n" + "\n".join(wrong)


# --------------------------------------------------------------------------- pod hygiene


def test_every_container_has_requests_and_limits(objs):
    for w in of_kind(objs, *WORKLOAD_KINDS):
        for c in containers(pod_template(w)["spec"]):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert res.get(part, {}).get(resource), (
                        f"{name_of(w)} container {c['name']}: no {part}.{resource}"
                    )


def test_pods_meet_the_restricted_pod_security_standard(objs):
    for w in of_kind(objs, *WORKLOAD_KINDS):
        spec = pod_template(w)["spec"]
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0, (
            f"{name_of(w)}: may run as root"
        )
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name_of(w)
        assert spec.get("automountServiceAccountToken") is False, (
            f"{name_of(w)}: mounts an API token it does not need"
        )
        for c in containers(spec):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{name_of(w)}/{c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name_of(w)}/{c['name']}"
        for v in spec.get("volumes", []):
            assert set(v) - {"name"} <= {
                "secret",
                "configMap",
                "emptyDir",
                "persistentVolumeClaim",
                "projected",
                "downwardAPI",
            }, f"{name_of(w)}: volume {v}"


def test_secrets_are_placeholders_without_data(objs):
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for s in of_kind(objs, "Secret"):
        assert "data" not in s and "stringData" not in s, (
            f"{name_of(s)}: secret material in the repository"
        )
        assert s["metadata"]["annotations"].get("tessera.io/keys"), (
            f"{name_of(s)}: say which keys it needs"
        )
        assert s["metadata"]["name"] in docs, (
            f"docs/deploy.md does not say how to create {name_of(s)}"
        )


def test_every_referenced_secret_and_config_map_exists(objs):
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for w in of_kind(objs, *WORKLOAD_KINDS):
        spec = pod_template(w)["spec"]
        for v in spec.get("volumes", []):
            if "secret" in v:
                assert ("Secret", v["secret"]["secretName"]) in names, f"{name_of(w)}: {v}"
                keys = get(objs, "Secret", v["secret"]["secretName"])["metadata"]["annotations"][
                    "tessera.io/keys"
                ].split()
                assert {i["key"] for i in v["secret"].get("items", [])} <= set(keys), (
                    f"{name_of(w)}: {v}"
                )
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names, f"{name_of(w)}: {v}"
        for c in containers(spec):
            for source in c.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in names, f"{name_of(w)}: {var}"


def test_jobs_set_up_the_database_the_metanodes_use(objs):
    meta_env = container_env(
        objs, get(objs, "Deployment", "tessera-meta")["spec"]["template"]["spec"]["containers"][0]
    )
    migrate = get(objs, "Job", "tessera-migrate")
    migrate_env = container_env(objs, pod_template(migrate)["spec"]["containers"][0])
    assert migrate_env["TESSERA_DB"] == meta_env["TESSERA_DB"], (
        "migrations must go to the metanodes' database"
    )
    dsn = urlsplit(meta_env["TESSERA_DB"])
    script = pod_template(get(objs, "Job", "cockroachdb-create-db"))["spec"]["containers"][0][
        "command"
    ][-1]
    assert f"CREATE DATABASE IF NOT EXISTS {dsn.path.lstrip('/')}" in script
    assert f"CREATE USER IF NOT EXISTS {dsn.username}" in script
    assert (
        "cockroach init"
        in pod_template(get(objs, "Job", "cockroachdb-init"))["spec"]["containers"][0]["command"][
            -1
        ]
    )


def test_upgrade_step_one_selects_the_migration_and_its_config(objs):
    """docs/deploy.md: `kubectl apply -k ... -l 'app.kubernetes.io/component in (config,migrate)'`."""
    selector = {
        "matchExpressions": [
            {
                "key": "app.kubernetes.io/component",
                "operator": "In",
                "values": ["config", "migrate"],
            }
        ]
    }
    chosen = [o for o in objs if selects(selector, o["metadata"].get("labels", {}))]
    assert {o["kind"] for o in chosen} == {"ConfigMap", "Job"}
    job = get(objs, "Job", "tessera-migrate")
    assert job in chosen
    spec = pod_template(job)["spec"]
    needed = {s["configMapRef"]["name"] for c in containers(spec) for s in c.get("envFrom", [])}
    needed |= {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    assert needed <= {o["metadata"]["name"] for o in chosen if o["kind"] == "ConfigMap"}


# --------------------------------------------------------------------------- optional component


def test_monitoring_component_points_at_real_ports(tmp_path):
    """k8s/components/monitoring (PodMonitors, CRDs: not schema-validated) on top of prod."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(K8S / "overlays" / "prod", tmp_path)],
                "components": [os.path.relpath(K8S / "components" / "monitoring", tmp_path)],
            }
        )
    )
    objs = render(tmp_path)
    monitors = of_kind(objs, "PodMonitor")
    assert monitors
    workloads = of_kind(objs, "Deployment", "StatefulSet")
    for m in monitors:
        targets = [
            w
            for w in workloads
            if selects(m["spec"]["selector"], pod_template(w)["metadata"]["labels"])
        ]
        assert targets, f"{name_of(m)} selects nothing"
        for w in targets:
            ports = {}
            for c in pod_template(w)["spec"]["containers"]:
                ports.update(named_ports(c))
            for endpoint in m["spec"]["podMetricsEndpoints"]:
                assert endpoint["port"] in ports, (
                    f"{name_of(m)}: {name_of(w)} has no port {endpoint['port']}"
                )


# --------------------------------------------------------------------------- the image


def test_dockerfile_matches_the_manifests():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2, "multi-stage build expected"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in line.split()}
    assert exposed == {*KIND_PORTS.values(), config.WEB_PORT, config.METRICS_PORT}
    entry = re.findall(r"^ENTRYPOINT\s+(.+)$", text, re.M)
    assert not entry or entry[-1].strip() == '["tessera"]', "ENTRYPOINT must be unset or tessera"
    user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
    uid = int(user.split(":")[0])
    assert uid != 0
    for overlay in OVERLAYS:
        for w, _, _ in tessera_nodes(render(K8S / "overlays" / overlay)):
            assert pod_template(w)["spec"]["securityContext"]["runAsUser"] == uid
    with open(ROOT / "pyproject.toml", "rb") as f:
        packages = [
            p.rstrip("*")
            for p in tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
        ]
    ignore = (ROOT / ".dockerignore").read_text().split()
    for pkg in packages:
        assert f"!{pkg}/" in ignore, f".dockerignore keeps package {pkg} out of the build context"
        assert re.search(rf"^COPY {pkg} \./{pkg}$", text, re.M), (
            f"the Dockerfile does not copy {pkg}"
        )


# --------------------------------------------------------------------------- the probe itself


def _load_probe():
    spec = importlib.util.spec_from_file_location("grpc_health_probe", PROBE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in k8s/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


@pytest.fixture(scope="module")
def probe():
    return _load_probe()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """A CA and a node certificate with SAN localhost, made the way docs/deploy.md says."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail(
            "openssl is needed to test the TLS probe (apt-get install openssl)", pytrace=False
        )
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=30)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=tessera-test-ca",
    )
    run("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=tessera-node")
    (d / "san.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    )
    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "other-ca.key",
        "-out",
        "other-ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=someone-else",
    )
    return {name: d / name for name in ("ca.crt", "tls.crt", "tls.key", "other-ca.crt")}


@pytest.fixture
def health_server(certs):
    """Start gRPC health servers: returns start(tls: bool) -> (port, servicer)."""
    servers = []

    def start(tls: bool):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        if tls:
            creds = grpc.ssl_server_credentials(
                [(certs["tls.key"].read_bytes(), certs["tls.crt"].read_bytes())]
            )
            port = server.add_secure_port("127.0.0.1:0", creds)
        else:
            port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return port, servicer

    yield start
    for s in servers:
        s.stop(None)


def _tls_env(certs, ca: str = "ca.crt") -> dict[str, str]:
    return {
        "TESSERA_TLS_CERT": str(certs["tls.crt"]),
        "TESSERA_TLS_KEY": str(certs["tls.key"]),
        "TESSERA_TLS_CA": str(certs[ca]),
    }


def test_probe_plaintext(probe, health_server):
    port, servicer = health_server(tls=False)
    kw = {"service": "", "server_name": "localhost", "timeout": 2.0, "environ": {}}
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert probe.check(port, live=False, **kw)[0]
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    ok, reason = probe.check(port, live=False, **kw)
    assert not ok and "NOT_SERVING" in reason
    assert probe.check(port, live=True, **kw)[0], "a node that answers NOT_SERVING is alive"
    ok, reason = probe.check(
        port, live=True, service="no.such.Service", server_name="localhost", timeout=2.0, environ={}
    )
    assert ok and "NOT_FOUND" in reason


def test_probe_tls(probe, health_server, certs):
    port, servicer = health_server(tls=True)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    kw = {"service": "", "server_name": "localhost", "timeout": 2.0}
    assert probe.check(port, live=False, environ=_tls_env(certs), **kw)[0]
    # What the kubelet's native grpc probe does (plaintext to a TLS port) fails: hence this script.
    assert not probe.check(port, live=True, environ={}, **kw)[0]
    # A server whose certificate our CA did not sign is not trusted.
    assert not probe.check(port, live=True, environ=_tls_env(certs, "other-ca.crt"), **kw)[0]


def test_probe_no_server(probe):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ok, reason = probe.check(
        port, live=True, service="", server_name="localhost", timeout=1.0, environ={}
    )
    assert not ok and ("UNAVAILABLE" in reason or "DEADLINE_EXCEEDED" in reason), reason


def test_probe_script_runs_as_the_kubelet_runs_it(health_server, certs):
    port, servicer = health_server(tls=True)
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    env = {**os.environ, **_tls_env(certs)}
    ready = subprocess.run(
        [sys.executable, str(PROBE_SCRIPT), str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ready.returncode == 1 and "NOT_SERVING" in ready.stdout
    live = subprocess.run(
        [sys.executable, str(PROBE_SCRIPT), str(port), "--live"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert live.returncode == 0, live.stdout + live.stderr
