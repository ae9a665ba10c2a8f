"""The CLI user's config: endpoint and token in ``$XDG_CONFIG_HOME/tessera/config.json``.

Clients find the cluster by ``--endpoint``, else ``TESSERA_ENDPOINT``, else this file, else the
local default address that ``tessera up`` listens on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tessera.config import DEFAULT_META_ENDPOINT


@dataclass
class UserConfig:
    """What ``tessera login`` and ``tessera up`` remember."""

    endpoint: str = ""
    token: str = ""
    user: str = ""
    device_id: str = ""
    web_url: str = ""  # the web gateway (share links point there)


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/tessera`` (``~/.config/tessera`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tessera"


def config_path() -> Path:
    return config_dir() / "config.json"


def load() -> UserConfig:
    """The saved config, or an empty one."""
    try:
        data = json.loads(config_path().read_text())
    except (FileNotFoundError, ValueError):
        return UserConfig()
    return UserConfig(
        **{k: str(v) for k, v in data.items() if k in UserConfig.__dataclass_fields__}
    )


def save(cfg: UserConfig) -> Path:
    """Write the config readable only by its owner (it holds a bearer token)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(cfg), f, indent=2)
    tmp.replace(path)
    return path


def resolve_endpoint(flag: str | None = None) -> str:
    """--endpoint, else TESSERA_ENDPOINT, else the config file, else the local default."""
    return flag or os.environ.get("TESSERA_ENDPOINT") or load().endpoint or DEFAULT_META_ENDPOINT
