"""Rules for remote paths and names (pure functions, no I/O).

A remote path is a sequence of names (segments) joined by ``/``, relative to the root of a
namespace and written without a leading slash; the root itself is the empty string. Names are
stored NFC-normalised and compared case- and normalisation-insensitively within a folder
(see ``name_key``), as on Dropbox, macOS and Windows. A name that could not exist on Windows or
macOS is refused up front with a clear ``InvalidPath`` rather than half-synced.

Used by the metadata server (to validate every path at the edge), the CLI and the sync daemon.
"""

from __future__ import annotations

import datetime
import unicodedata

__all__ = [
    "MAX_DEPTH",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "InvalidPath",
    "conflicted_copy_name",
    "is_ancestor",
    "join_path",
    "name_key",
    "normalize_path",
    "numbered_name",
    "parent_and_name",
    "path_key",
    "split_path",
    "validate_name",
]

MAX_NAME_BYTES = 255
"""Maximum UTF-8 length of one name (segment), after NFC normalisation."""
MAX_PATH_BYTES = 4096
"""Maximum UTF-8 length of a normalised path (segments joined by '/', no leading slash)."""
MAX_DEPTH = 256
"""Maximum number of segments in a path."""

# Characters Windows refuses in names (':' is also the classic macOS separator); '/' and '\\'
# are reported separately with a more specific message.
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Windows device names, compared case-insensitively against the part of a name before its
# first dot with trailing spaces removed ("con", "Con.txt", "NUL .tar.gz", "COM¹.log").
_RESERVED_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"{dev}{digit}" for dev in ("com", "lpt") for digit in "123456789\u00b9\u00b2\u00b3"]
)
# NFC composition never folds more than four code points into one, so a raw path longer than
# this many code points is over MAX_PATH_BYTES once normalised; refuse it before doing any work.
_RAW_PATH_LIMIT = 4 * MAX_PATH_BYTES
# Longest device label kept in a conflicted-copy name, so the original stem stays readable.
_MAX_DEVICE_BYTES = 64
# If fitting a suffix before the extension would leave fewer stem bytes than this, the suffix
# goes after the whole (truncated) name instead.
_MIN_STEM_BYTES = 8
_SHOW_CHARS = 40


class InvalidPath(ValueError):
    """A path or name that cannot be stored.

    ``str(e)`` is one clear sentence naming the problem and the offending segment.

    Attributes:
        segment: The offending segment (or whole path for path-level problems), if known.
    """

    def __init__(self, message: str, *, segment: str | None = None) -> None:
        super().__init__(message)
        self.segment = segment


def _show(text: str) -> str:
    """Quote ``text`` for an error message: repr() escapes control characters; long text is cut."""
    if len(text) > _SHOW_CHARS:
        text = text[: _SHOW_CHARS - 1] + "\u2026"
    return repr(text)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes without splitting a code point."""
    return text.encode("utf-8")[: max(max_bytes, 0)].decode("utf-8", "ignore")


def _is_control(ch: str) -> bool:
    """ASCII control characters: C0 (U+0000 to U+001F) and DEL (U+007F)."""
    return ch < "\x20" or ch == "\x7f"


def _is_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udfff"


def validate_name(name: str) -> str:
    """Validate one name (path segment) and return its NFC form.

    Refuses: the empty name, ``.`` and ``..``, NUL, ``/``, ``\\``, ASCII control characters
    (U+0000 to U+001F and U+007F), unpaired surrogates (not encodable as UTF-8), the characters
    ``< > : " | ? *``, a trailing dot or space, more than ``MAX_NAME_BYTES`` UTF-8 bytes, and
    Windows device names (CON PRN AUX NUL COM1-COM9 LPT1-LPT9, also with superscript ¹²³, in any
    case, with or without an extension such as ``con.tar.gz`` or ``NUL .txt``).

    Args:
        name: One segment, in any Unicode normalisation form.

    Returns:
        The NFC-normalised name.

    Raises:
        InvalidPath: If the name cannot be stored; the message names the problem and the name.
        TypeError: If ``name`` is not a ``str``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    if name == "":
        raise InvalidPath("A name is empty.", segment=name)
    for ch in name:
        if _is_surrogate(ch):
            raise InvalidPath(
                f"Name {_show(name)} contains an unpaired surrogate U+{ord(ch):04X}, "
                "which is not valid Unicode text.",
                segment=name,
            )
    nfc = _nfc(name)
    shown = _show(nfc)
    if nfc in (".", ".."):
        raise InvalidPath(
            f"Name {shown} is not allowed, because '.' and '..' are reserved.", segment=nfc
        )
    for ch in nfc:
        if ch == "\x00":
            raise InvalidPath(f"Name {shown} contains a NUL character.", segment=nfc)
        if ch == "/":
            raise InvalidPath(f"Name {shown} contains '/', the path separator.", segment=nfc)
        if ch == "\\":
            raise InvalidPath(
                f"Name {shown} contains a backslash, which is not allowed (use '/' "
                "to separate folders).",
                segment=nfc,
            )
        if _is_control(ch):
            raise InvalidPath(
                f"Name {shown} contains the control character U+{ord(ch):04X}.", segment=nfc
            )
        if ch in _WINDOWS_FORBIDDEN:
            raise InvalidPath(
                f"Name {shown} contains {ch!r}, which is not allowed in names on Windows.",
                segment=nfc,
            )
    if nfc.endswith("."):
        raise InvalidPath(
            f"Name {shown} ends with a dot, which Windows does not allow.", segment=nfc
        )
    if nfc.endswith(" "):
        raise InvalidPath(
            f"Name {shown} ends with a space, which Windows does not allow.", segment=nfc
        )
    size = _utf8_len(nfc)
    if size > MAX_NAME_BYTES:
        raise InvalidPath(
            f"Name {shown} is {size} bytes long in UTF-8, over the limit of "
            f"{MAX_NAME_BYTES} bytes.",
            segment=nfc,
        )
    device = nfc.split(".", 1)[0].rstrip(" ")
    if device.casefold() in _RESERVED_DEVICES:
        raise InvalidPath(
            f"Name {shown} is reserved on Windows (device name {device.upper()}).", segment=nfc
        )
    return nfc


def normalize_path(path: str, *, allow_root: bool = False) -> str:
    """Validate and canonicalise a remote path.

    Accepts one optional leading ``/`` and strips one trailing ``/``; every segment must pass
    ``validate_name`` and is NFC-normalised. The result has no leading or trailing slash and is
    a fixed point: ``normalize_path(normalize_path(p)) == normalize_path(p)``.

    Args:
        path: The path as given by a client, e.g. ``"/Docs/report.txt"``.
        allow_root: Whether the root (``""`` or ``"/"``) is acceptable here.

    Returns:
        The canonical path, e.g. ``"Docs/report.txt"``; ``""`` for the root.

    Raises:
        InvalidPath: For the root when not allowed, empty segments (``a//b``, ``//a``), any
            segment refused by ``validate_name``, a normalised path over ``MAX_PATH_BYTES``
            bytes, or more than ``MAX_DEPTH`` segments.
        TypeError: If ``path`` is not a ``str``.
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be str, not {type(path).__name__}")
    if path in ("", "/"):
        if allow_root:
            return ""
        raise InvalidPath("The root folder cannot be used here; give a path below it.", segment="")
    if len(path) > _RAW_PATH_LIMIT:
        raise InvalidPath(
            f"Path {_show(path)} is over the limit of {MAX_PATH_BYTES} bytes.", segment=path
        )
    body = path[1:] if path.startswith("/") else path
    body = body[:-1] if body.endswith("/") else body
    segments = body.split("/")
    if len(segments) > MAX_DEPTH:
        raise InvalidPath(
            f"Path {_show(path)} is {len(segments)} levels deep, over the limit of {MAX_DEPTH}.",
            segment=path,
        )
    out: list[str] = []
    for segment in segments:
        if segment == "":
            raise InvalidPath(
                f"Path {_show(path)} has an empty segment (a doubled '/' or an extra "
                "leading or trailing '/').",
                segment=path,
            )
        out.append(validate_name(segment))
    result = "/".join(out)
    size = _utf8_len(result)
    if size > MAX_PATH_BYTES:
        raise InvalidPath(
            f"Path {_show(result)} is {size} bytes long in UTF-8, over the limit of "
            f"{MAX_PATH_BYTES} bytes.",
            segment=result,
        )
    return result


def split_path(path: str) -> list[str]:
    """Split an already-normalised path into its names.

    Args:
        path: Output of ``normalize_path`` (not re-validated).

    Returns:
        The segments; ``[]`` for the root ``""``.
    """
    return path.split("/") if path else []


def join_path(*parts: str) -> str:
    """Join already-normalised paths or names, skipping empty parts (the root).

    The result is not re-validated; pass it through ``normalize_path`` if the combined length
    or depth might exceed the limits.

    Args:
        *parts: Normalised paths (``"a/b"``), names or ``""``.

    Returns:
        The joined path, ``""`` if every part is empty.
    """
    return "/".join(part for part in parts if part)


def parent_and_name(path: str) -> tuple[str, str]:
    """Split an already-normalised path into its parent folder and final name.

    Args:
        path: A normalised, non-root path.

    Returns:
        ``("a/b", "c.txt")`` for ``"a/b/c.txt"``; ``("", "x")`` for ``"x"``.

    Raises:
        InvalidPath: For the root, which has neither parent nor name.
    """
    if not path:
        raise InvalidPath("The root folder has no parent and no name.", segment="")
    parent, _, name = path.rpartition("/")
    return parent, name


def name_key(name: str) -> str:
    """Return the collision key of a name within a folder.

    Two names collide when their keys are equal: the comparison is case-insensitive and
    normalisation-insensitive, so ``A.txt``/``a.txt`` and NFD/NFC ``é`` collide. The key is
    Unicode canonical caseless matching, NFC(casefold(NFD(name))), which unlike an NFC inner
    step also matches Greek letters with ypogegrammeni in every form. In addition, dotless
    ``ı`` folds to ``i``, because Windows upper-cases both to ``I``; the key is therefore at
    least as coarse as the case-insensitivity of Windows (NTFS), macOS (APFS, HFS+) and
    Dropbox, so two names with different keys can coexist on every client.

    Args:
        name: One name; not validated.

    Returns:
        The key, itself NFC-normalised.
    """
    folded = unicodedata.normalize("NFD", name).casefold().replace("\u0131", "i")
    return _nfc(folded)


def path_key(path: str) -> str:
    """Return ``name_key`` of each segment of a normalised path, joined by ``/``.

    Args:
        path: A normalised path; ``""`` for the root.

    Returns:
        The collision key of the whole path (``""`` for the root).
    """
    return "/".join(name_key(segment) for segment in split_path(path))


def is_ancestor(ancestor: str, path: str) -> bool:
    """Tell whether ``ancestor`` is a strict ancestor folder of ``path``, compared by key.

    ``"A"`` is an ancestor of ``"a/b"``; the root ``""`` is an ancestor of every other path;
    a path is not its own ancestor, and ``"a"`` is not an ancestor of ``"ab"``.

    Args:
        ancestor: A normalised path.
        path: A normalised path.

    Returns:
        True if ``path`` lies strictly inside ``ancestor``.
    """
    ancestor_keys = [name_key(segment) for segment in split_path(ancestor)]
    path_keys = [name_key(segment) for segment in split_path(path)]
    return len(ancestor_keys) < len(path_keys) and path_keys[: len(ancestor_keys)] == ancestor_keys


def _split_ext(name: str) -> tuple[str, str]:
    """Split a name at its last dot: ``archive.tar.gz`` -> (``archive.tar``, ``.gz``).

    A name with no dot, or whose only dot is the first character (``.bashrc``), has no
    extension.
    """
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def _insert_before_ext(name: str, label: str) -> str:
    """Insert ``label`` between the stem and extension of a valid name, within the byte limit.

    The stem is truncated on a UTF-8 boundary when needed. If that would leave almost nothing
    of the stem (a very long extension), the label goes after the whole truncated name.
    """
    name = validate_name(name)
    stem, ext = _split_ext(name)
    budget = MAX_NAME_BYTES - _utf8_len(label) - _utf8_len(ext)
    stem_bytes = _utf8_len(stem)
    if budget < min(stem_bytes, _MIN_STEM_BYTES):
        stem, ext = name, ""
        stem_bytes = _utf8_len(stem)
        budget = MAX_NAME_BYTES - _utf8_len(label)
    if budget < 1:
        raise ValueError(f"suffix {label!r} is too long to fit in a name")
    if stem_bytes > budget:
        stem = _truncate_utf8(stem, budget)
    # The stem keeps the original's text before its first dot (or gains the label there), and
    # the name ends with the original extension or ")", so the result is always valid.
    return validate_name(stem + label + ext)


def _sanitise_label(text: str, max_bytes: int) -> str:
    """Make free text (a device name) safe inside a name: one line, no forbidden characters."""
    text = " ".join(_nfc(text).split())
    text = "".join(
        "_"
        if _is_control(ch) or _is_surrogate(ch) or ch in _WINDOWS_FORBIDDEN or ch in "/\\"
        else ch
        for ch in text
    )
    return _truncate_utf8(text, max_bytes).strip()


def conflicted_copy_name(name: str, device: str, when: datetime.date | datetime.datetime) -> str:
    """Name the loser of a conflict, the way Dropbox does.

    ``report.txt`` -> ``report (conflicted copy, laptop, 2026-11-21).txt``. The extension is
    the last suffix (``archive.tar.gz`` -> ``archive.tar (conflicted copy, …).gz``); a name
    starting with a dot and having no other dot keeps the whole name as stem
    (``.bashrc (conflicted copy, …)``).

    The device label is sanitised (whitespace runs become one space; control characters,
    ``< > : " | ? * / \\`` and unpaired surrogates become ``_``; cut to 64 UTF-8 bytes;
    ``unknown device`` if nothing is left). The stem is truncated on a UTF-8 boundary so the
    result fits ``MAX_NAME_BYTES``; if the extension is so long that almost nothing of the stem
    would remain, the label goes after the whole truncated name instead.

    Args:
        name: A valid name (checked with ``validate_name``).
        device: A device label, free text.
        when: The date of the conflict; for a datetime, its own (local or aware) date is used.

    Returns:
        A name that passes ``validate_name``.

    Raises:
        InvalidPath: If ``name`` itself is not a valid name.
    """
    day = when.date() if isinstance(when, datetime.datetime) else when
    label = _sanitise_label(device, _MAX_DEVICE_BYTES) or "unknown device"
    return _insert_before_ext(name, f" (conflicted copy, {label}, {day.isoformat()})")


def numbered_name(name: str, n: int) -> str:
    """Number a name to resolve a clash: ``Docs`` -> ``Docs (2)``, ``photo.jpg`` -> ``photo (2).jpg``.

    Same extension and truncation rules as ``conflicted_copy_name``.

    Args:
        name: A valid name (checked with ``validate_name``).
        n: The number, at least 1.

    Returns:
        A name that passes ``validate_name``.

    Raises:
        InvalidPath: If ``name`` itself is not a valid name.
        ValueError: If ``n`` is below 1 or too large to fit in a name.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be int, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    return _insert_before_ext(name, f" ({n})")
