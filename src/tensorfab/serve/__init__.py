"""Serve a model repository: KServe v2 HTTP and gRPC APIs, dynamic batching, Prometheus
metrics and Triton's statistics."""

from tensorfab.serve.app import GrpcOptions, ServerOptions, create_app
from tensorfab.serve.server import BackgroundServer, Bind, run_server

__all__ = ["BackgroundServer", "Bind", "GrpcOptions", "ServerOptions", "create_app", "run_server"]
