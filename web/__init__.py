"""Tessera's web interface: an HTTP gateway (Starlette) that is a client of the cluster like
any other. Run it with ``python -m web --endpoint METANODE --listen HOST:PORT``."""
