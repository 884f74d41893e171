"""``tensorfab perf URL``: a bounded load test against a running ``tensorfab serve``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tensorfab.auth import token_from_env
from tensorfab.errors import TensorfabError

EXAMPLE = """\
tensorfab perf http://127.0.0.1:8000 --model ner --texts lines.txt --clients 32 --requests 2000"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="server address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True, help="model name in the repository")
    parser.add_argument("--texts", required=True, help="file with one text per line to send")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=1000, help="requests in all")
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="time bound, above 0 (default 120)"
    )
    parser.add_argument("--token-env", default="TENSORFAB_TOKEN", help="bearer token variable")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def server_url(url: str) -> str:
    """The server's base URL without a trailing slash; refused unless http(s)://host[:port].

    Checked before any load, so a typo is one error, not N failed requests.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port raises ValueError when it is not a number
    except ValueError as exc:
        raise TensorfabError(f"{url}: not a server URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TensorfabError(f"{url}: not a server URL; give http://HOST:PORT")
    return url.rstrip("/")


def text_lines(path: Path) -> list[str]:
    """The non-blank lines of ``--texts``; a folder, a missing or a non-UTF-8 file is one line."""
    if path.is_dir():
        raise TensorfabError(f"--texts {path}: is a directory; give a file with one text a line")
    if not path.is_file():
        raise TensorfabError(f"--texts {path}: no such file")
    from tensorfab.data.text_types import read_text_file  # a bad byte named by its line

    texts = [t for t in read_text_file(path).splitlines() if t.strip()]
    if not texts:
        raise TensorfabError(f"--texts {path}: no text lines")
    return texts


def run(args: argparse.Namespace) -> int:
    from tensorfab.serve.loadgen import (  # the serve extra
        LoadSpec,
        failure_line,
        model_not_ready,
        run_load,
    )

    base = server_url(args.url)
    if args.clients < 1 or args.requests < 1:
        raise TensorfabError("--clients and --requests must be at least 1")
    if not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
        raise TensorfabError(f"--max-seconds {args.max_seconds}: must be a number above 0")
    bodies = [json.dumps({"text": t}).encode() for t in text_lines(Path(args.texts))]
    token = token_from_env(args.token_env)
    problem = model_not_ready(base, args.model, token)
    if problem is not None:
        raise TensorfabError(f"--model {args.model!r} at {base}: {problem}; nothing was sent")
    spec = LoadSpec(
        url=f"{base}/v1/models/{args.model}:predict",
        bodies=bodies,
        clients=args.clients,
        requests=args.requests,
        max_seconds=args.max_seconds,
        token=token,
    )
    summary = run_load(spec)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif summary["succeeded"]:
        print(
            f"{summary['requests']} requests, {summary['failed']} failed, "
            f"{summary['requests_per_s']:.1f} successful req/s, p50 {summary['p50_ms']:.1f} ms, "
            f"p99 {summary['p99_ms']:.1f} ms ({summary['clients']} clients)"
        )
    problem = failure_line(summary)
    if problem is None:
        return 0
    print(f"error: {problem}", file=sys.stderr)
    return 1
