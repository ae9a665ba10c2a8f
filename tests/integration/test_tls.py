"""TLS end to end: a metanode serving TLS, reached by the SDK with a CA and a server-name check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Client, ClientConfig, UnavailableError

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and a server certificate for the name tessera.test."""
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=tessera-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=tessera.test",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:tessera.test\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "node.pem",
        cwd=d,
    )
    return d


@pytest.fixture(scope="module")
def tls_metanode(cluster_env, certs: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A second metanode on the session's etcd and database, serving TLS only."""
    ready = certs / "meta.ready"
    env = {
        **os.environ,
        "TESSERA_CLUSTER_SECRET": cluster_env.secret,
        "TESSERA_TLS_CERT": str(certs / "node.pem"),
        "TESSERA_TLS_KEY": str(certs / "node.key"),
        "TESSERA_TLS_CA": str(certs / "ca.pem"),
        "TESSERA_TLS_SERVER_NAME": "tessera.test",
    }
    log = (certs / "meta.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metanode",
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            cluster_env.etcd,
            "--db",
            cluster_env.db,
            "--ready-file",
            str(ready),
            "--node-id",
            "meta-tls-test",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, (certs / "meta.log").read_text()
            assert time.monotonic() < deadline, "TLS metanode did not become ready"
            time.sleep(0.1)
        yield json.loads(ready.read_text())["grpc"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_sdk_speaks_tls_with_ca_and_server_name(
    tls_metanode: str, cluster_env, certs: Path
) -> None:  # type: ignore[no-untyped-def]
    cfg = ClientConfig(tls_ca=str(certs / "ca.pem"), tls_server_name="tessera.test", timeout=10)
    async with await Client.connect(tls_metanode, token=cluster_env.admin_token, config=cfg) as c:
        entry = await c.make_folder("tls-check")
        assert entry.is_folder
        assert "tls-check" in [e.name for e in await c.list("")]


async def test_plaintext_or_wrong_ca_cannot_talk_to_a_tls_node(
    tls_metanode: str, cluster_env, certs: Path
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnavailableError):
        await Client.connect(
            tls_metanode, token=cluster_env.admin_token, config=ClientConfig(timeout=5)
        )
    # The right CA but the wrong expected name: the certificate check refuses it.
    wrong_name = ClientConfig(
        tls_ca=str(certs / "ca.pem"), tls_server_name="not-tessera.example", timeout=5
    )
    with pytest.raises(UnavailableError):
        await Client.connect(tls_metanode, token=cluster_env.admin_token, config=wrong_name)
