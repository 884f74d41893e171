"""CUDA graphs for a dynamic-shape inference graph: one capture per (batch, sequence) bucket.

A CUDA graph replays fixed shapes at fixed addresses, while a server sees every batch size
and sequence length. So inputs are padded up to their bucket (the next power of two), each
bucket is captured once on first use, and the outputs are cut back to the real size.

Chosen over ``torch.compile(mode="reduce-overhead")``, which also keeps a graph per shape but
compiles each new shape first (seconds, stalling the request that brought it) and quietly
runs eager once its recompile limit is reached; a capture here takes milliseconds and the
number of buckets stays small (log2 of the largest batch times log2 of the longest sequence).

The padding changes nothing that is kept: padded tokens have attention mask 0, so real
tokens attend to real tokens only, and padded rows are dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

MIN_SEQ_BUCKET = 8  # shorter sequences share one bucket: a graph per length 1..7 buys nothing

Forward = Callable[..., torch.Tensor]
Key = tuple[int, ...]


def bucket_size(n: int, minimum: int = 1) -> int:
    """The smallest power of two that holds ``n`` (at least ``minimum``)."""
    return max(minimum, 1 << (n - 1).bit_length())


def pad_inputs(args: tuple[torch.Tensor, ...]) -> tuple[tuple[torch.Tensor, ...], Key]:
    """Pad a graph's inputs to their bucket and return the bucket's key.

    Images [B, C, H, W] are padded along B; token ids and mask [B, T] along B and T.
    """
    batch = args[0].shape[0]
    padded_batch = bucket_size(batch)
    if len(args) == 1:
        images = args[0]
        pad = images.new_zeros((padded_batch - batch, *images.shape[1:]))
        return (torch.cat([images, pad]),), (padded_batch,)
    ids, mask = args
    seq = ids.shape[1]
    padded_seq = bucket_size(seq, MIN_SEQ_BUCKET)
    ids_out = ids.new_zeros((padded_batch, padded_seq))
    mask_out = mask.new_zeros((padded_batch, padded_seq))
    ids_out[:batch, :seq] = ids
    mask_out[:batch, :seq] = mask
    mask_out[batch:] = 1  # padded rows see their own tokens: a fully masked row gives NaN
    return (ids_out, mask_out), (padded_batch, padded_seq)


def cut_output(logits: torch.Tensor, batch: int, seq: int | None) -> torch.Tensor:
    """Logits of the real rows (and real tokens, for per-token logits [B, T, C])."""
    logits = logits[:batch]
    if seq is not None and logits.dim() == 3:
        logits = logits[:, :seq]
    return logits


class BucketedGraphs:
    """``forward`` replayed from one CUDA graph per input bucket, captured on first use.

    With ``capture=False`` it pads and cuts exactly the same way but runs ``forward``
    directly, which lets the padding be checked on a CPU.
    """

    def __init__(self, forward: Forward, device: torch.device, capture: bool = True) -> None:
        self.forward, self.device, self.capture = forward, device, capture
        self.graphs: dict[Key, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]]
        self.graphs = {}
        self.pool: object | None = None
        # replay writes the graph's fixed input and output buffers: one request at a time
        self.lock = threading.Lock()

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        padded, key = pad_inputs(args)
        batch, seq = args[0].shape[0], (args[0].shape[1] if len(args) == 2 else None)
        if not self.capture:
            return cut_output(self.forward(*padded), batch, seq)
        with self.lock:
            graph, inputs, output = self.graphs.get(key) or self._capture(key, padded)
            for buffer, value in zip(inputs, padded, strict=True):
                buffer.copy_(value)
            graph.replay()
            return cut_output(output, batch, seq).clone()

    def _capture(
        self, key: Key, example: tuple[torch.Tensor, ...]
    ) -> tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]:
        inputs = tuple(t.clone() for t in example)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up off the capture: lazy inits, cuBLAS workspaces
            for _ in range(3):
                self.forward(*inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self.pool is None:  # one memory pool for all buckets: they never run at once
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: a server captures a new bucket while other threads run other
        # models on the same GPU; the default "global" mode would fail this capture on
        # their CUDA calls, which have nothing to do with it
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            output = self.forward(*inputs)
        self.graphs[key] = (graph, inputs, output)
        return self.graphs[key]
