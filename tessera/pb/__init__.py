"""Generated protobuf and gRPC code for tessera.v1 (do not edit; run `make proto`)."""

from tessera.pb import block_pb2, block_pb2_grpc, common_pb2, errors_pb2, meta_pb2, meta_pb2_grpc, sync_pb2, sync_pb2_grpc

__all__ = [
    "block_pb2",
    "block_pb2_grpc",
    "common_pb2",
    "errors_pb2",
    "meta_pb2",
    "meta_pb2_grpc",
    "sync_pb2",
    "sync_pb2_grpc",
]
