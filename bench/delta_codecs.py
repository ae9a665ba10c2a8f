"""Delta encodings compared on one chunk (what chose ``tessera.delta``'s design).

    .venv/bin/python bench/delta_codecs.py [--chunk-kib 1024]

For a random base chunk and four edits of it, prints the delta size and time of:

* ``cdc-N``: ``tessera.delta`` (content-defined pieces of average N bytes, 64-bit digests), with
  the signature's size on the wire (what the side without the target must send or receive);
* ``zstd-dict``: zstd with the whole base as a raw-content dictionary (level 3 and 19), which
  needs the target's holder to also hold the base (no signature, but the full base).

Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zstandard  # noqa: E402

from tessera import delta  # noqa: E402

KiB = 1024


def _edits(base: bytes) -> list[tuple[str, bytes]]:
    mid = len(base) // 2
    return [
        ("append 4 KiB", base + os.urandom(4 * KiB)),
        ("insert 100 B", base[:mid] + os.urandom(100) + base[mid:]),
        ("overwrite 256 KiB", base[:mid] + os.urandom(256 * KiB) + base[mid + 256 * KiB :]),
        (
            "overwrite 256 KiB +12,345",
            base[: mid + 12_345] + os.urandom(256 * KiB) + base[mid + 12_345 + 256 * KiB :],
        ),
    ]


def _cdc(avg: int) -> Callable[[bytes, bytes], tuple[int, int]]:
    def run(base: bytes, target: bytes) -> tuple[int, int]:
        old = delta.PIECE_MIN, delta.PIECE_AVG, delta.PIECE_MAX
        delta.PIECE_MIN, delta.PIECE_AVG, delta.PIECE_MAX = avg // 4, avg, avg * 4
        try:
            sig = delta.signature(base)
            d = delta.encode(target, sig)
            assert delta.apply(base, d, len(target) + 1) == target
        finally:
            delta.PIECE_MIN, delta.PIECE_AVG, delta.PIECE_MAX = old
        sig_bytes = sum(len(x) + 2 for x in sig.digests) + sum(
            len(delta._varint(s)) for s in sig.sizes
        )
        return len(d), sig_bytes

    return run


def _zstd(level: int) -> Callable[[bytes, bytes], tuple[int, int]]:
    def run(base: bytes, target: bytes) -> tuple[int, int]:
        zd = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        params = zstandard.ZstdCompressionParameters.from_level(
            level, window_log=23, enable_ldm=True
        )
        d = zstandard.ZstdCompressor(dict_data=zd, compression_params=params).compress(target)
        got = zstandard.ZstdDecompressor(dict_data=zd).decompress(d, max_output_size=len(target))
        assert got == target
        return len(d), len(base)

    return run


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--chunk-kib", type=int, default=1024)
    args = p.parse_args()
    base = os.urandom(args.chunk_kib * KiB)
    codecs = {
        "cdc-1024": _cdc(1024),
        "cdc-2048": _cdc(2048),
        "cdc-4096": _cdc(4096),
        "zstd-dict-3": _zstd(3),
        "zstd-dict-19": _zstd(19),
    }
    print(f"base chunk {args.chunk_kib} KiB (random bytes)")
    print(f"{'edit':28} {'codec':14} {'delta':>10} {'needs':>12} {'ms':>8}")
    for name, target in _edits(base):
        for codec, run in codecs.items():
            t0 = time.perf_counter()
            size, needs = run(base, target)
            ms = (time.perf_counter() - t0) * 1000
            what = "sig" if codec.startswith("cdc") else "base"
            print(f"{name:28} {codec:14} {size:>10,} {needs:>8,} {what:4} {ms:>6.1f}")


if __name__ == "__main__":
    main()
