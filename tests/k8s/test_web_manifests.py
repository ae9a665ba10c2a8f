"""The web gateway's Kubernetes objects (k8s/base/web.yaml): a Deployment running the
``tessera-web`` console script, an HTTP Service, and a NetworkPolicy that lets browsers in and
lets it reach only the metanodes and block nodes, as a client of the cluster."""

from __future__ import annotations

import pytest

from tessera import config
from tests.k8s.test_manifests import (
    K8S,
    OVERLAYS,
    _endpoints,
    allowed,
    console_scripts,
    containers,
    get,
    hostport,
    is_tessera,
    mounted_file,
    name_of,
    named_ports,
    of_kind,
    pod_template,
    probe_port,
    render,
    selects,
)

WEB_SCRIPT = "tessera-web"


@pytest.fixture(params=OVERLAYS)
def objs(request: pytest.FixtureRequest) -> tuple[dict, ...]:
    """Every object of one overlay, rendered."""
    return render(K8S / "overlays" / request.param)


def test_web_gateway_is_a_deployment_and_service_reaching_the_metanodes(objs):
    """The web interface: its own console script, an HTTP Service, health probes on its port,
    the metanode Service as its endpoint over TLS, uploads spooled on an emptyDir."""
    assert WEB_SCRIPT in console_scripts()
    web = get(objs, "Deployment", "tessera-web")
    [c] = containers(pod_template(web)["spec"])
    assert c["command"] == [WEB_SCRIPT] and is_tessera(c)
    assert named_ports(c) == {"http": config.WEB_PORT}
    env = {v["name"]: v.get("value", "") for v in c["env"]}
    assert env["TESSERA_WEB_LISTEN"] == f"0.0.0.0:{config.WEB_PORT}"
    meta_svc = get(objs, "Service", "tessera-meta")
    host, port = hostport(env["TESSERA_ENDPOINT"])
    assert host.split(".")[0] == name_of(meta_svc).split("/")[-1] and port == config.META_PORT
    assert env["TESSERA_TLS"] == "true"
    kind, secret, key = mounted_file(objs, pod_template(web)["spec"], c, env["TESSERA_TLS_CA"])
    assert kind == "Secret" and key == "ca.crt"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz", probe
        assert probe_port(c[probe], c) == config.WEB_PORT, probe
    svc = get(objs, "Service", "tessera-web")
    assert selects(svc["spec"]["selector"], pod_template(web)["metadata"]["labels"])
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    spool = [v for v in pod_template(web)["spec"]["volumes"] if v["name"] == "tmp"]
    assert spool and "emptyDir" in spool[0]


def test_web_gateway_network_policy(objs):
    policies = of_kind(objs, "NetworkPolicy")
    ep = _endpoints(objs)
    crdb = named_ports(
        pod_template(get(objs, "StatefulSet", "cockroachdb"))["spec"]["containers"][0]
    )["grpc"]
    allow = [
        ("client", "tessera-web", config.WEB_PORT),
        ("stranger", "tessera-web", config.WEB_PORT),
        ("tessera-web", "meta", config.META_PORT),
        ("tessera-web", "block", config.BLOCK_PORT),
    ]
    deny = [
        ("tessera-web", "cockroachdb", crdb),
        ("tessera-web", "sync", config.SYNC_PORT),
        ("tessera-web", "block", config.METRICS_PORT),
        ("tessera-web", "stranger", 443),
        ("client", "tessera-web", config.METRICS_PORT),
    ]
    wrong = [
        f"{s} -> {d}:{p} is blocked" for s, d, p in allow if not allowed(policies, ep[s], ep[d], p)
    ]
    wrong += [f"{s} -> {d}:{p} is open" for s, d, p in deny if allowed(policies, ep[s], ep[d], p)]
    assert not wrong, "the web gateway's NetworkPolicy disagrees with the design:\n" + "\n".join(
        wrong
    )
