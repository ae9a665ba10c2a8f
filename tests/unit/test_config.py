"""Config: defaults, env, flags, validation."""

import pytest

from tessera.config import BlockConfig, ConfigError, MetaConfig, SyncConfig, load

SECRET = "s" * 32


def test_flag_beats_env_beats_default() -> None:
    env = {"TESSERA_CLUSTER_SECRET": SECRET, "TESSERA_REPLICAS": "5", "TESSERA_ZONE": "z-env"}
    cfg = load(BlockConfig, ["--zone", "z-flag"], prog="blocknode", description="", environ=env)
    assert cfg.zone == "z-flag"
    assert cfg.replicas == 5
    assert cfg.write_quorum == 2


def test_bool_flags_and_env() -> None:
    cfg = load(
        MetaConfig,
        ["--log-json"],
        prog="metanode",
        description="",
        environ={"TESSERA_CLUSTER_SECRET": SECRET},
    )
    assert cfg.log_json is True
    cfg = load(
        MetaConfig,
        [],
        prog="metanode",
        description="",
        environ={"TESSERA_CLUSTER_SECRET": SECRET, "TESSERA_LOG_JSON": "yes"},
    )
    assert cfg.log_json is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "cluster-secret"),
        (["--cluster-secret", SECRET, "--write-quorum", "4"], "write-quorum"),
        (["--cluster-secret", SECRET, "--listen", "nohost"], "--listen"),
        (["--cluster-secret", SECRET, "--replicas", "three"], "--replicas"),
        (["--cluster-secret", SECRET, "--etcd", "http://:x"], "--etcd"),
        (["--cluster-secret", SECRET, "--tls-cert", "a.pem"], "tls"),
    ],
)
def test_invalid_values_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(BlockConfig, argv, prog="blocknode", description="", environ={})


def test_etcd_endpoints_parse() -> None:
    cfg = load(
        SyncConfig,
        ["--etcd", "http://10.0.0.1:2379,etcd-1:2380"],
        prog="syncnode",
        description="",
        environ={"TESSERA_CLUSTER_SECRET": SECRET},
    )
    assert cfg.etcd_endpoints() == [("10.0.0.1", 2379), ("etcd-1", 2380)]


def test_migrate_only_needs_no_secret() -> None:
    cfg = load(
        MetaConfig,
        ["--migrate-only", "--db", "postgresql://x/y"],
        prog="metanode",
        description="",
        environ={},
    )
    assert cfg.migrate_only
