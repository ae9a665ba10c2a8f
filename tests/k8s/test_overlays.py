"""The overlays for real users (k8s/overlays/small and external) and the one place zone names
live (k8s/components/zones). tests/k8s/test_manifests.py runs its checks over every overlay,
these included; this file checks what is particular to them: the small overlay schedules on
three machines (and prod does not), zone names change everywhere from one file, and in the
external overlay every address a node advertises is served by a public Service."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.test_manifests import (
    K8S,
    container_env,
    containers,
    get,
    name_of,
    of_kind,
    pod_template,
    render,
    selects,
    tessera_nodes,
)

Host = dict[str, Any]


def _quantity(value: str | int | float) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _pods(objs) -> list[dict[str, Any]]:
    """One pod spec per replica (HPA-owned Deployments at their minimum), labelled."""
    hpa_min = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
        for h in of_kind(objs, "HorizontalPodAutoscaler")
    }
    pods = []
    for w in of_kind(objs, "Deployment", "StatefulSet"):
        n = w["spec"].get("replicas", hpa_min.get(w["metadata"]["name"], 1))
        pods += [{"owner": name_of(w), **pod_template(w)}] * n
    return pods


def _requests(pod: dict[str, Any]) -> tuple[float, float]:
    cpu = mem = 0.0
    for c in containers(pod["spec"], init=False):
        req = c.get("resources", {}).get("requests", {})
        cpu += _quantity(req.get("cpu", 0))
        mem += _quantity(req.get("memory", 0))
    return cpu, mem


def _fits(
    pod: dict[str, Any], host: Host, hosts: list[Host], placed: list[tuple[dict[str, Any], Host]]
) -> bool:
    spec = pod["spec"]
    for key, value in spec.get("nodeSelector", {}).items():
        if host["labels"].get(key) != value:
            return False
    cpu, mem = _requests(pod)
    if cpu > host["cpu"] or mem > host["memory"]:
        return False
    anti = spec.get("affinity", {}).get("podAntiAffinity", {})
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution", []):
        key = term["topologyKey"]
        for other, where in placed:
            if where["labels"][key] == host["labels"][key] and selects(
                term["labelSelector"], other["metadata"]["labels"]
            ):
                return False
    for c in spec.get("topologySpreadConstraints", []):
        if c["whenUnsatisfiable"] != "DoNotSchedule":
            continue
        key = c["topologyKey"]
        counts: dict[str, int] = {}
        for other, where in placed:
            if selects(c["labelSelector"], other["metadata"]["labels"]):
                counts[where["labels"][key]] = counts.get(where["labels"][key], 0) + 1
        domains = {h["labels"][key] for h in hosts}
        after = {d: counts.get(d, 0) for d in domains}
        after[host["labels"][key]] += 1
        if max(after.values()) - min(after.values()) > c["maxSkew"]:
            return False
    return True


def schedule(objs, zones: list[str], cpu: float, memory: float) -> list[str]:
    """Place every pod on one machine per zone (greedy, most constrained first); the pods that
    found no machine."""
    hosts = [
        {
            "labels": {"kubernetes.io/hostname": f"node-{i}", "topology.kubernetes.io/zone": z},
            "cpu": cpu,
            "memory": memory,
        }
        for i, z in enumerate(zones)
    ]
    pods = sorted(_pods(objs), key=lambda p: -_requests(p)[0])
    placed: list[tuple[dict[str, Any], Host]] = []
    unplaced = []
    for pod in pods:
        for host in sorted(hosts, key=lambda h: h["cpu"], reverse=True):
            if _fits(pod, host, hosts, placed):
                cpu_req, mem_req = _requests(pod)
                host["cpu"] -= cpu_req
                host["memory"] -= mem_req
                placed.append((pod, host))
                break
        else:
            unplaced.append(pod["owner"])
    return unplaced


ZONES = ["zone-a", "zone-b", "zone-c"]


def test_small_schedules_on_three_machines_and_prod_does_not() -> None:
    small = render(K8S / "overlays" / "small")
    assert schedule(small, ZONES, cpu=8, memory=32 * 2**30) == []
    block = [w for w in of_kind(small, "StatefulSet") if "block" in w["metadata"]["name"]]
    assert sum(w["spec"]["replicas"] for w in block) == 3
    # The check can fail: prod needs nine machines for its block nodes alone.
    prod = render(K8S / "overlays" / "prod")
    unplaced = schedule(prod, ZONES, cpu=8, memory=32 * 2**30)
    assert any("tessera-block" in u for u in unplaced)


def _block_zones(objs) -> dict[str, tuple[str, str]]:
    out = {}
    for w, c, script in tessera_nodes(objs):
        if script == "blocknode":
            selector = pod_template(w)["spec"]["nodeSelector"]["topology.kubernetes.io/zone"]
            out[w["metadata"]["name"]] = (selector, container_env(objs, c)["TESSERA_ZONE"])
    return out


def test_zone_names_are_set_in_one_place(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    zones_env = copy / "components" / "zones" / "zones.env"
    text = zones_env.read_text()
    for old, new in zip(ZONES, ["eu-west-1a", "eu-west-1b", "eu-west-1c"], strict=True):
        assert f"={old}\n" in text
        text = text.replace(f"={old}\n", f"={new}\n")
    zones_env.write_text(text)
    for overlay in ("prod", "small", "external"):
        before = _block_zones(render(K8S / "overlays" / overlay))
        assert before == {
            f"tessera-block-{s}": (z, z) for s, z in zip("abc", ZONES, strict=True)
        }, overlay
        objs = render(copy / "overlays" / overlay)
        after = _block_zones(objs)
        assert after == {
            f"tessera-block-{s}": (z, z)
            for s, z in zip("abc", ["eu-west-1a", "eu-west-1b", "eu-west-1c"], strict=True)
        }, overlay
        rendered = yaml.safe_dump_all(objs)
        for old in ZONES:
            assert old not in rendered, f"{overlay}: {old} is still set somewhere else"


def _env_list(w: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_template(w)["spec"]["containers"][0]["env"]


def _expanded(w: dict[str, Any], domain: str) -> str:
    """TESSERA_ADVERTISE with $(VAR)s expanded as the kubelet does (envFrom, then env in order)."""
    container = pod_template(w)["spec"]["containers"][0]
    sources = [s["configMapRef"]["name"] for s in container.get("envFrom", [])]
    assert "tessera-public" in sources, name_of(w)
    values: dict[str, str] = {"PUBLIC_DOMAIN": domain}
    for e in _env_list(w):
        if "value" in e:
            v = e["value"]
            for k, known in values.items():
                v = v.replace(f"$({k})", known)
            values[e["name"]] = v
        elif "metadata.name" == e["valueFrom"].get("fieldRef", {}).get("fieldPath"):
            values[e["name"]] = f"{w['metadata']['name']}-0"  # a StatefulSet's only pod
    assert "$(" not in values["TESSERA_ADVERTISE"], values["TESSERA_ADVERTISE"]
    return values["TESSERA_ADVERTISE"]


@pytest.fixture(scope="module")
def external() -> tuple[dict[str, Any], ...]:
    return render(K8S / "overlays" / "external")


def test_external_every_advertised_address_has_a_public_service(external) -> None:
    objs = external
    domain = get(objs, "ConfigMap", "tessera-public")["data"]["PUBLIC_DOMAIN"]
    public = [s for s in of_kind(objs, "Service") if s["spec"].get("type") == "LoadBalancer"]
    by_host = {
        s["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"]: s for s in public
    }
    nodes = [
        (w, script) for w, _c, script in tessera_nodes(objs) if script in ("blocknode", "syncnode")
    ]
    assert sorted(s for _, s in nodes) == ["blocknode"] * 3 + ["syncnode"] * 2
    for w, _script in nodes:
        host, _, port = _expanded(w, domain).rpartition(":")
        assert host.endswith("." + domain), (name_of(w), host)
        svc = by_host.get(host)
        assert svc is not None, f"{name_of(w)} advertises {host}, which no public Service serves"
        assert int(port) in {p["port"] for p in svc["spec"]["ports"]}
        assert w["spec"]["replicas"] == 1, f"{name_of(w)}: one pod behind one public name"
        targets = [
            x
            for x in of_kind(objs, "Deployment", "StatefulSet")
            if selects(
                {"matchLabels": svc["spec"]["selector"]}, pod_template(x)["metadata"]["labels"]
            )
        ]
        assert targets == [w], f"{name_of(svc)} must select exactly {name_of(w)}"
    meta = by_host[f"meta.{domain}"]
    assert selects(
        {"matchLabels": meta["spec"]["selector"]},
        pod_template(get(objs, "Deployment", "tessera-meta"))["metadata"]["labels"],
    )


def test_external_sync_slots_keep_the_base_sync_pod(external) -> None:
    base = next(
        d
        for d in yaml.safe_load_all((K8S / "base" / "syncnode.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    slot = next(
        d
        for d in yaml.safe_load_all(
            (K8S / "overlays" / "external" / "sync-slot" / "deployment.yaml").read_text()
        )
        if d["kind"] == "Deployment"
    )
    a, b = base["spec"]["template"], slot["spec"]["template"]
    env_a = [e for e in a["spec"]["containers"][0]["env"] if e["name"] != "TESSERA_ADVERTISE"]
    env_b = [e for e in b["spec"]["containers"][0]["env"] if e["name"] != "TESSERA_ADVERTISE"]
    assert env_a == env_b
    from_b = b["spec"]["containers"][0]["envFrom"]
    assert from_b[-1] == {"configMapRef": {"name": "tessera-public"}}
    b["spec"]["containers"][0]["envFrom"] = from_b[:-1]
    for part in (a, b):
        part["spec"]["containers"][0].pop("env")
    assert a == b, "the sync slot's pod drifted from k8s/base/syncnode.yaml"
