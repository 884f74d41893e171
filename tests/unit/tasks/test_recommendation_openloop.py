"""The MovieLens open-loop script's HTTP client against a tiny local HTTP/1.1 server."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "movielens-100k-openloop.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openloop", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _exchange(statuses: list[int]) -> tuple[list[int], int, list[bytes]]:
    """Serve ``statuses`` in turn on 127.0.0.1; returns what the client read, how many
    connections it opened and the bodies the server received."""
    opened, bodies = [0], []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        while statuses:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            bodies.append(await reader.readexactly(length))
            answer = b'{"predictions": []}'
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                % (statuses.pop(0), len(answer), answer)
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = _script().Connections("127.0.0.1", port)
    got = [await asyncio.wait_for(http.post("/v1/x", b'{"a": %d}' % i), 5) for i in range(2)]
    http.close()
    server.close()
    await server.wait_closed()
    return got, opened[0], bodies


def test_the_client_reads_each_status_and_keeps_its_connection() -> None:
    got, opened, bodies = asyncio.run(_exchange([200, 503]))
    assert got == [200, 503]
    assert opened == 1  # the second request reused the first connection
    assert bodies == [b'{"a": 0}', b'{"a": 1}']
