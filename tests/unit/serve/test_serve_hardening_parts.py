"""Parts of issue 12 without a server: overflow-safe sizes, no recursion from a body, the
byte bound of a queue, logs limited per kind with a count of what was left out."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tensorfab.package.repository import ModelConfig
from tensorfab.serve.app import decompressed
from tensorfab.serve.batching import BatchPolicy, DynamicBatcher, QueueFullError
from tensorfab.serve.guard import RateLimitedLog, RequestTally, guard
from tensorfab.serve.protocol import ProtocolError, element_count, parse_infer_request
from tensorfab.serve.repository import LoadedVersion
from tensorfab.tasks import ServingLimits, TensorSpec


def _version(specs: list[TensorSpec], max_batch_size: int, **limits: int) -> LoadedVersion:
    config = ModelConfig(max_batch_size=max_batch_size)
    version = LoadedVersion("m", "1", config, None, None, None, None, ServingLimits(**limits))  # type: ignore[arg-type]
    version.__dict__["signature"] = (specs, [])  # the cached signature, without a runtime
    return version


def test_the_body_limit_follows_the_input_signature_and_max_batch_size() -> None:
    image = [TensorSpec("images", "UINT8", (1, 28, 28))]
    assert _version(image, 64).body_limit(16 << 20) == 784 * 64 * 32 + 65536  # 1,671,168
    tokens = [TensorSpec("input_ids", "INT64", (-1,)), TensorSpec("attention_mask", "INT64", (-1,))]
    assert _version(tokens, 8, max_positions=512).body_limit(16 << 20) == 2 * 512 * 8 * 32 + 65536
    assert _version(tokens, 8).body_limit(1000) == 1000  # no known length: the server's
    assert _version(image, 0).body_limit(1000) == 1000  # batching off: no row bound
    assert _version(image, 64).body_limit(1000) == 1000  # never above the server's


@pytest.mark.parametrize(
    "shape", [[4294967296, 4294967296], [2**32, 2**32, 0], [2**62, 3], [2**31 + 1]]
)
def test_sizes_that_overflow_int64_are_refused_in_python_integers(shape: list[int]) -> None:
    with pytest.raises(ProtocolError, match=r"holds more than 2147483648 elements"):
        element_count(shape, "input 'x'")


def test_element_counts_within_the_limit_are_exact() -> None:
    assert element_count([3, 0, 5], "x") == 0
    assert element_count([2**15, 2**16], "x") == 2**31
    assert element_count([], "x") == 1


def test_a_hundred_thousand_nested_brackets_are_a_quick_400() -> None:
    start = time.perf_counter()
    with pytest.raises(ProtocolError, match="malformed JSON") as info:
        parse_infer_request(b"[" * 100_000)
    assert info.value.status == 400
    assert time.perf_counter() - start < 0.5


def test_request_parameters_keep_their_keys_and_types() -> None:
    body = {
        "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [7]}],
        "parameters": {"timeout": 500, "binary_data_output": True, "priority": 2},
        "outputs": [{"name": "y"}, {"name": "z", "parameters": {"binary_data": False}}],
    }
    request = parse_infer_request(json.dumps(body).encode())
    assert request.parameters == {"timeout": 500, "binary_data_output": True, "priority": 2}
    assert request.outputs == {"y": True, "z": False}


def test_the_queue_refuses_past_its_byte_bound_but_always_takes_one() -> None:
    async def scenario() -> list[str]:
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher(
            run=lambda feed: np.zeros((len(feed["x"]), 1)),
            policy=BatchPolicy(64, 10.0),  # waits 10 s: the queue fills
            max_queue_size=100,
            per_position=False,
            executor=pool,
            max_queue_bytes=1000,
        )
        batcher.start()
        big = {"x": np.zeros((1, 100), np.float64)}  # 800 bytes
        first = asyncio.ensure_future(batcher.submit(big, 1, 5.0))
        await asyncio.sleep(0)
        seen = [f"queued {batcher.queued_bytes}"]
        try:
            await batcher.submit(big, 1, 5.0)
        except QueueFullError as exc:
            seen.append(str(exc))
        await batcher.stop()  # drains: the first request is answered
        seen.append(f"first {(await first).shape}, queued {batcher.queued_bytes}")
        pool.shutdown()
        return seen

    assert asyncio.run(scenario()) == [
        "queued 800",
        "queue full (800 bytes waiting, limit 1000)",
        "first (1, 1), queued 0",
    ]


def test_logs_are_limited_per_kind_and_say_how_many_were_left_out() -> None:
    now, lines = [0.0], []
    log = RateLimitedLog(burst=2, window_s=60.0, clock=lambda: now[0], emit=lines.append)
    assert [log("ValueError", f"bad {i}") for i in range(5)] == [True, True, False, False, False]
    assert log("KeyError", "other kind") is True
    now[0] = 61.0
    assert log("ValueError", "bad again") is True
    assert lines == [
        "bad 0",
        "bad 1",
        "other kind",
        "ValueError: 3 more like it in 61 s",
        "bad again",
    ]


def test_the_tally_summary_says_answered_and_cut() -> None:
    tally = RequestTally(answered=14, errors=0, cut=18)
    assert tally.summary() == "14 requests answered, 18 cut"
    assert RequestTally(answered=3, errors=1).summary() == (
        "3 requests answered (1 internal errors), 0 cut"
    )


def test_a_cut_request_is_answered_503_with_close_and_counted_cut_not_answered() -> None:
    async def scenario() -> tuple[list[dict], RequestTally, bool]:
        tally, sent = RequestTally(), []
        started = asyncio.Event()

        async def slow_app(scope: dict, receive: object, send: object) -> None:
            started.set()
            await asyncio.sleep(60)

        async def send(message: dict) -> None:
            sent.append(message)

        guarded = guard(slow_app, tally, RateLimitedLog(emit=lambda line: None))  # type: ignore[arg-type]
        cut = asyncio.create_task(guarded({"type": "http"}, None, send))  # type: ignore[arg-type]
        other = asyncio.create_task(guarded({"type": "http"}, None, send))  # type: ignore[arg-type]
        await started.wait()
        await asyncio.sleep(0)
        other.cancel()  # a cancel that is not the cut's goes on up (uvicorn's own)
        await asyncio.gather(other, return_exceptions=True)
        assert guarded.cut_in_flight() == 1
        await cut
        return sent, tally, other.cancelled()

    sent, tally, propagated = asyncio.run(scenario())
    assert propagated
    assert sent[0]["status"] == 503 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"].startswith("server shutting down: the request")
    assert (tally.answered, tally.cut, tally.in_flight) == (0, 2, 0)


GOOD_BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def _deflated(data: bytes, wbits: int) -> bytes:
    pack = zlib.compressobj(wbits=wbits)
    return pack.compress(data) + pack.flush()


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 31), ("deflate", 15)])
def test_gzip_and_deflate_bodies_are_read_within_the_limit_after_decompressing(
    encoding: str, wbits: int
) -> None:
    body = json.dumps(GOOD_BODY).encode()
    packed = _deflated(body, wbits)
    assert decompressed(packed, encoding, len(body)) == body
    assert decompressed(body, "identity", 10) == body  # identity: as sent, not checked here
    with pytest.raises(ProtocolError) as bomb:  # 1 MB of zeros in ~1 kB: inflates past 1,000
        decompressed(_deflated(bytes(1 << 20), wbits), encoding, 1000)
    assert bomb.value.status == 413 and "once decompressed" in str(bomb.value)
    for broken, says in [
        (packed[:-9], "ends before its end mark"),
        (b"not compressed", f"not valid {encoding} data"),
        (packed + packed, f"bytes after the end of the {encoding} data"),
    ]:
        with pytest.raises(ProtocolError, match=says) as bad:
            decompressed(broken, encoding, 1 << 20)
        assert bad.value.status == 400
