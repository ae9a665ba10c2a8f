"""Where each namespace (the user's root, each shared folder) lives in the synced folder."""

from __future__ import annotations


class Mounts:
    """Where each namespace lives in the folder ("" for the user's root namespace)."""

    def __init__(self, root_ns: str, mounts: dict[str, str]) -> None:
        self.root_ns = root_ns
        self.by_ns = dict(mounts)
        self.by_ns.setdefault(root_ns, "")

    def local(self, ns_id: str, ns_path: str) -> str | None:
        """The local relative path of a namespace path (None: not mounted)."""
        mount = self.by_ns.get(ns_id)
        if mount is None:
            return None
        return f"{mount}/{ns_path}" if mount and ns_path else (mount or ns_path)

    def remote(self, rel: str) -> tuple[str, str]:
        """(namespace, path inside it) of a local relative path: the deepest mount wins."""
        best, best_mount = self.root_ns, ""
        for ns_id, mount in self.by_ns.items():
            if (
                mount
                and (rel == mount or rel.startswith(mount + "/"))
                and len(mount) > len(best_mount)
            ):
                best, best_mount = ns_id, mount
        return best, rel[len(best_mount) + 1 :] if best_mount else rel

    def shadowed(self, root_path: str) -> bool:
        """A root-namespace path strictly inside another namespace's mount (history from before
        the folder was shared: those files now live in the shared namespace)."""
        ns_id, inner = self.remote(root_path)
        return ns_id != self.root_ns and inner != ""
