"""Serve a model repository: KServe v2 HTTP API, dynamic batching, Prometheus metrics."""

from tensorfab.serve.app import ServerOptions, create_app
from tensorfab.serve.server import BackgroundServer, Bind, run_server

__all__ = ["BackgroundServer", "Bind", "ServerOptions", "create_app", "run_server"]
