"""Tessera: file sync and storage on a gRPC storage cluster (the shared kernel)."""

__version__ = "0.1.0"
