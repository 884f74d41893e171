"""``tensorfab serve REPO``: the KServe v2 inference server over a model repository."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from tensorfab.auth import token_from_env
from tensorfab.errors import TensorfabError

DEFAULT_TOKEN_ENV = "TENSORFAB_TOKEN"

if TYPE_CHECKING:
    from tensorfab.serve.service import GrpcOptions

EXAMPLE = """\
tensorfab export runs/conll2003-minilm --repo repo --name ner
tensorfab serve repo --port 8000
tensorfab serve repo --model-control explicit   # then: curl -X POST .../models/ner/load
tensorfab serve repo --grpc-port 8001 --access-log   # gRPC (tritonclient.grpc) beside HTTP
curl -s localhost:8000/v2/models/ner/stats     # Triton's statistics (counts as in /metrics)
curl -s localhost:8000/v1/models/ner-int8-dynamic:predict -d '{"text": "EU rejects German call ."}'
TENSORFAB_TOKEN=secret tensorfab serve repo --host 0.0.0.0 --models ner"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", help="model repository: repo/<model>/[config.yaml, <version>/]")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve the KServe v2 gRPC protocol (inference.GRPCInferenceService) on "
        "this port, from the same models and batchers; needs the grpc extra (default: off)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="print one line per request: client, method and path (or gRPC method), "
        "status, latency (default: off)",
    )
    parser.add_argument("--models", help="comma-separated models to load (default: all)")
    parser.add_argument(
        "--token-env",
        default=None,
        help="environment variable holding a bearer token; when set, every route but "
        "/v2/health/* requires 'Authorization: Bearer <token>' (default: TENSORFAB_TOKEN, "
        "optional; a variable named here must be set, else the server does not start)",
    )
    parser.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body")
    parser.add_argument(
        "--strict-readiness",
        action="store_true",
        help="/v2/health/ready fails while any model failed to load",
    )
    parser.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--threads", type=int, default=4, help="threads computing batches")
    parser.add_argument(
        "--model-control",
        choices=("none", "explicit"),
        default="none",
        help="explicit: POST /v2/repository/models/NAME/load|unload (re)load and unload "
        "models; none (default): those routes answer 403",
    )
    parser.add_argument(
        "--max-queue-mb",
        type=float,
        default=256.0,
        help="bytes of inputs queued per model version before 429 (default 256)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds for a request's headers; a slower socket is closed (default 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds for a request's body; slower: 408 and closed (default 30)",
    )


def _check_limits(args: argparse.Namespace) -> None:
    """Refuse numbers the server cannot start with, as one line rather than a traceback."""
    if args.threads < 1:
        raise TensorfabError(f"--threads {args.threads}: must be at least 1")
    if not args.max_body_mb > 0:
        raise TensorfabError(f"--max-body-mb {args.max_body_mb}: must be above 0")
    if not args.graceful_timeout >= 0:
        raise TensorfabError(f"--graceful-timeout {args.graceful_timeout}: must be 0 or more")
    for flag in ("max_queue_mb", "header_timeout", "body_timeout"):
        if not getattr(args, flag) > 0:
            name = "--" + flag.replace("_", "-")
            raise TensorfabError(f"{name} {getattr(args, flag)}: must be above 0")


def _grpc(args: argparse.Namespace) -> GrpcOptions | None:
    """The gRPC endpoint's options, or None without ``--grpc-port``; the extra must be there."""
    from tensorfab.serve.server import check_port
    from tensorfab.serve.service import GrpcOptions

    if args.grpc_port is None:
        return None
    check_port(args.grpc_port, "--grpc-port")
    if args.grpc_port == args.port:
        raise TensorfabError(
            f"--grpc-port {args.grpc_port}: that is the HTTP port (--port) already; "
            "give gRPC a port of its own"
        )
    try:
        import tensorfab.serve.grpc_server  # noqa: F401  (grpcio and tritonclient[grpc])
    except ImportError as exc:
        raise TensorfabError(
            f"--grpc-port needs the grpc extra ({exc.name} is missing): "
            "pip install 'tensorfab[grpc]'"
        ) from None
    return GrpcOptions(
        args.grpc_port, args.host, args.graceful_timeout, handshake_timeout_s=args.header_timeout
    )


def _token(variable: str | None) -> str | None:
    """The bearer token: ``TENSORFAB_TOKEN`` when set, or the variable ``--token-env`` names,
    which must be set (asking for auth and serving without it would be a hole)."""
    if variable is None:
        return token_from_env(DEFAULT_TOKEN_ENV)
    token = token_from_env(variable)
    if token is None:
        raise TensorfabError(
            f"--token-env {variable}: ${variable} is not set; set it to the token, "
            "or leave --token-env out to serve without auth"
        )
    return token


def _models(repo: Path, given: str | None) -> list[str] | None:
    """The models ``--models`` names (None: all); refused when there is nothing to serve."""
    from tensorfab.package.repository import repository_models

    if given is None:
        if not repository_models(repo):
            raise TensorfabError(
                f"{repo}: no models to serve (no <model>/<version>/ folder); "
                "export one with 'tensorfab export RUN --repo REPO --name NAME'"
            )
        return None
    models = [m.strip() for m in given.split(",") if m.strip()]
    if not models:
        raise TensorfabError(f"--models {given!r}: names no model; give NAME[,NAME...]")
    return models


def run(args: argparse.Namespace) -> int:
    from tensorfab.serve import Bind, ServerOptions, run_server  # the serve extra, when run
    from tensorfab.serve.server import check_port

    repo = Path(args.repo)
    if not repo.is_dir():
        raise TensorfabError(f"{repo}: no such model repository folder")
    check_port(args.port)
    _check_limits(args)
    grpc = _grpc(args)
    token = _token(args.token_env)
    options = ServerOptions(
        repository=repo,
        models=_models(repo, args.models),
        token=token,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        strict_readiness=args.strict_readiness,
        compute_threads=args.threads,
        announce=lambda line: print(line, flush=True),
        model_control=args.model_control,
        max_queue_bytes=int(args.max_queue_mb * 1024 * 1024),
        body_timeout_s=args.body_timeout,
        grpc=grpc,
        access_log=(lambda line: print(line, flush=True)) if args.access_log else None,
    )
    bind = Bind(
        args.host,
        args.port,
        args.graceful_timeout,
        "warning",
        header_timeout_s=args.header_timeout,
    )
    stopped_by = run_server(options, bind)
    if stopped_by is None:
        return 0
    name = signal.Signals(stopped_by).name
    print(f"stopped on {name}: {options.tally.summary()}", flush=True)
    return 128 + stopped_by
