"""Delta transfer and wire compression in the Block service (issue 12).

* ``GetSignature``: the signature of a chunk the caller holds a read ticket for, with a ticket
  narrowed to that chunk and ``narrow_to`` (a whole file's ticket names every chunk of it;
  resending it with each delta would cost more than the delta).
* A delta put (``PutChunkRequest.base_hash`` + ``delta``): the base must be named by a valid
  read ticket issued to the caller (``base_ticket``), checked before the base is looked up, so
  a delta can never probe whether someone else's chunk exists (the dedup side channel). The
  node rebuilds the chunk, and the service verifies its SHA-256 and stores and replicates it as
  if it had arrived whole: same receipt, commits do not change.
* A compressed put (``zstd_data``) is decompressed (bounded) and handled the same way.
* ``GetChunks`` with ``bases``: the caller sends the signature of bytes it holds; the chunk
  goes out as a delta against them when that is smaller. The node never reads a base for this.
  With ``accept_zstd`` a chunk goes compressed when that saves 10%.

This module holds only the RPC layer; the pure algorithm is ``tessera.delta``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import grpc

from blocknode.store import HASH_LEN
from tessera import delta
from tessera.auth import Principal
from tessera.chunking import MAX_CHUNK
from tessera.errors import InvalidArgument, NotFound, PermissionDenied
from tessera.pb import block_pb2, common_pb2
from tessera.rpc import current_principal

if TYPE_CHECKING:
    from tessera.auth import Signer

__all__ = ["DeltaCalls", "signature_from_pb", "signature_to_pb"]

MAX_BASES = 64  # delta bases in one GetChunks call, hashes a GetSignature narrows to
MAX_PUT_BASES = 8  # chunks whose concatenation is one put's delta base ...
BASE_BUDGET = 3 * MAX_CHUNK  # ... totalling at most this many bytes


def signature_to_pb(sig: delta.Signature, chunk_hash: bytes = b"") -> block_pb2.ChunkSignature:
    return block_pb2.ChunkSignature(
        hash=chunk_hash, block_size=delta.PIECE_AVG, strong=sig.digests, sizes=sig.sizes
    )


def signature_from_pb(msg: block_pb2.ChunkSignature) -> delta.Signature:
    """A checked signature of at most ``BASE_BUDGET`` bytes (DeltaError when malformed)."""
    sig = delta.Signature(tuple(msg.sizes), tuple(bytes(d) for d in msg.strong))
    sig.check(BASE_BUDGET)
    return sig


class DeltaCalls:
    """Mixed into BlockService: the delta and compression parts of its calls."""

    _signer: Signer

    def _check_ticket(
        self, ticket: common_pb2.ReadTicket, principal: Principal, hashes: Iterable[bytes]
    ) -> None:
        raise NotImplementedError

    async def _read(self, chunk_hash: bytes, *, local_only: bool) -> bytes:
        raise NotImplementedError

    async def GetSignature(
        self, request: block_pb2.GetSignatureRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.ChunkSignature:
        """The signature of a chunk named by the caller's read ticket, with a narrow ticket."""
        principal = current_principal()
        chunk_hash = bytes(request.hash)
        if len(chunk_hash) != HASH_LEN:
            raise InvalidArgument(f"a chunk hash is 32 bytes (SHA-256), got {len(chunk_hash)}")
        narrow = list(dict.fromkeys([chunk_hash, *request.narrow_to]))
        if len(narrow) > MAX_BASES or any(len(h) != HASH_LEN for h in narrow):
            raise InvalidArgument(f"narrow_to takes at most {MAX_BASES - 1} chunk hashes")
        if not principal.is_node:
            self._check_ticket(request.ticket, principal, narrow)
        data = await self._read(chunk_hash, local_only=principal.is_node)
        sig = await asyncio.to_thread(delta.signature, data)
        out = signature_to_pb(sig, chunk_hash)
        if not principal.is_node:
            ttl = max(1, request.ticket.expires_at - int(time.time()))
            expires_at, signature = self._signer.sign_ticket(principal.user_id, narrow, ttl)
            out.base_ticket.CopyFrom(
                common_pb2.ReadTicket(
                    user_id=principal.user_id,
                    hashes=narrow,
                    expires_at=expires_at,
                    signature=signature,
                )
            )
        return out

    async def _incoming_data(
        self, request: block_pb2.PutChunkRequest, principal: Principal
    ) -> tuple[bytes, int]:
        """The chunk bytes a put stands for (rebuilt from a delta or decompressed), and how many
        bytes it took on the wire. The caller still verifies the hash."""
        if request.delta or request.base_hash:
            base_hash = bytes(request.base_hash)
            if len(base_hash) != HASH_LEN or not request.delta:
                raise InvalidArgument("a delta put needs a 32-byte base_hash and a delta")
            if principal.is_node:
                raise PermissionDenied("node callers send whole chunks")
            names = [base_hash, *(bytes(h) for h in request.more_bases)]
            if len(names) > MAX_PUT_BASES or any(len(h) != HASH_LEN for h in names):
                raise InvalidArgument(f"a delta has at most {MAX_PUT_BASES} 32-byte base hashes")
            self._check_ticket(request.base_ticket, principal, names)
            parts: list[bytes] = []
            for h in names:
                try:
                    parts.append(await self._read(h, local_only=False))
                except NotFound:
                    raise NotFound(
                        f"base chunk {h.hex()} is no longer stored: send the whole chunk"
                    ) from None
                if sum(map(len, parts)) > BASE_BUDGET:
                    raise InvalidArgument(f"delta bases total more than {BASE_BUDGET} bytes")
            base = b"".join(parts)
            try:
                data = await asyncio.to_thread(delta.apply, base, bytes(request.delta), MAX_CHUNK)
            except delta.DeltaError as e:
                raise InvalidArgument(f"bad delta for chunk {request.hash.hex()}: {e}") from None
            return data, len(request.delta)
        if request.zstd_data:
            try:
                data = await asyncio.to_thread(
                    delta.decompress, bytes(request.zstd_data), MAX_CHUNK
                )
            except delta.DeltaError as e:
                raise InvalidArgument(f"bad compressed chunk {request.hash.hex()}: {e}") from None
            return data, len(request.zstd_data)
        return bytes(request.data), len(request.data)

    @staticmethod
    def _delta_bases(request: block_pb2.GetChunksRequest) -> dict[bytes, delta.Signature]:
        if len(request.bases) > MAX_BASES:
            raise InvalidArgument(f"at most {MAX_BASES} delta bases per call")
        wanted = set(request.hashes) or set(request.ticket.hashes)
        bases: dict[bytes, delta.Signature] = {}
        for b in request.bases:
            if b.target not in wanted:
                raise InvalidArgument("a delta base names a chunk that is not asked for")
            try:
                bases[bytes(b.target)] = signature_from_pb(b.signature)
            except delta.DeltaError as e:
                raise InvalidArgument(f"bad base signature: {e}") from None
        return bases

    @staticmethod
    async def _outgoing(
        chunk_hash: bytes, data: bytes, base: delta.Signature | None, zstd: bool
    ) -> block_pb2.ChunkData:
        """A chunk as it goes out: as a delta, compressed or whole, whichever is smallest."""
        if base is not None:
            d = await asyncio.to_thread(delta.encode, data, base)
            if len(d) < len(data):
                return block_pb2.ChunkData(hash=chunk_hash, delta=d)
        if zstd:  # a 64 KiB sample decides first: incompressible chunks cost little
            packed = await asyncio.to_thread(delta.compress_if_worth, data)
            if packed is not None:
                return block_pb2.ChunkData(hash=chunk_hash, zstd_data=packed)
        return block_pb2.ChunkData(hash=chunk_hash, data=data)
