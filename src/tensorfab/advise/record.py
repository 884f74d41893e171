"""What one step does, op by op: FLOPs, bytes moved, kernels, and memory held.

:class:`OpRecorder` is a ``TorchDispatchMode``: it sees every ATen op a real step runs on
the CPU (forward, the autograd backward, the optimizer), after PyTorch has decomposed
the composite ones, i.e. the ops a GPU would launch kernels for. Per op it keeps the FLOPs
of PyTorch's own formulas (``torch.utils.flop_counter``, as ``FlopCounterMode`` counts
them), the bytes of its tensor inputs and outputs, and whether it launches a kernel
(a view or a metadata op does not). It also keeps the bytes of every storage alive and
their peak, freed storages leaving through a weak-reference finaliser: the step's peak
memory, measured on the step itself.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# A foreach (or fused optimizer) op is one dispatch; on a GPU it launches one kernel per
# chunk of tensors (multi-tensor-apply: up to 110 tensors or 320 blocks a launch; assume 24).
FOREACH_TENSORS_PER_KERNEL = 24
# Ops that only read a value to the host: they wait for the device, launch nothing.
_SYNC_OPS = {"_local_scalar_dense", "item", "equal", "is_nonzero"}
# Profiler markers (the optimizer's record_function): host work, no kernel.
_HOST_ONLY = {"_record_function_enter_new", "_record_function_exit", *_SYNC_OPS}
# PyTorch's CPU attention op has no formula in flop_registry (the CUDA ones have).
_CPU_ATTENTION = {
    "_scaled_dot_product_flash_attention_for_cpu": 1.0,
    "_scaled_dot_product_flash_attention_for_cpu_backward": 2.0,  # dQ, dK, dV, dP
}


@dataclass(frozen=True)
class OpRecord:
    """One dispatched op: name, phase, FLOPs, bytes read + written, kernels, compute dtype."""

    name: str
    phase: str
    flops: float
    bytes: float
    kernels: int
    dtype: str  # the first floating-point input's dtype ("" if none): picks the peak
    depth: int = 0  # a convolution's reduction depth (see conv_depth); 0 for other ops
    gemm: tuple[int, ...] = ()  # a matrix product's (M, N, K) per matrix (see gemm_shape)
    layout: str = ""  # a 2-D convolution's memory format and kernel (see conv_layout)
    pixels: int = 0  # a 2-D convolution's output positions per image (see conv_pixels)


def _tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors in an op's arguments or results, in ``tree_flatten``'s order (depth
    first, left to right); a plain walk over tuples, lists and dicts, which is all an ATen
    op takes or returns (pytree's general flatten was half of a recorded step's time)."""
    found, stack = [], [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            found.append(x)
        elif isinstance(x, (tuple, list)):
            stack.extend(reversed(x))
        elif isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
    return found


def _nbytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# Ops that read only the rows their indices pick from their first tensor (a word table of
# 30,522 x 768 for a 128-token batch): that tensor's bytes read are the output's, not its own.
_GATHERS = frozenset({"embedding", "index_select", "gather", "take"})


def _moved(name: str, inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> int:
    """Bytes an op reads and writes: its tensors' sizes, a gather's rows read instead of
    the whole table it reads them from."""
    if name in _GATHERS and inputs:
        return _nbytes(inputs[1:]) + 2 * _nbytes(outputs)
    return _nbytes(inputs) + _nbytes(outputs)


@cache
def _is_view(func: Any) -> bool:
    """A view (outputs alias an input, nothing written): no kernel, no bytes."""
    returns = func._schema.returns
    return bool(returns) and all(
        r.alias_info is not None and not r.alias_info.is_write for r in returns
    )


def _attention_flops(name: str, args: tuple) -> float:
    """FLOPs of the CPU attention op: Q K^T and P V, 2 * 2*B*H*T*S*d, times the factor."""
    q, k = args[0], args[1]
    if name.endswith("_backward"):
        q, k = args[1], args[2]  # (grad_out, query, key, value, ...)
    b, h, t, d = q.shape
    s = k.shape[-2]
    return _CPU_ATTENTION[name] * 4.0 * b * h * t * s * d


def op_flops(func: Any, args: tuple, kwargs: dict, out: Any) -> float:
    """FLOPs of one op by PyTorch's formula (0 for ops it does not count)."""
    packet = func.overloadpacket
    if packet in flop_registry:
        return float(flop_registry[packet](*args, **kwargs, out_val=out))
    name = packet.__name__
    if name in _CPU_ATTENTION:
        return _attention_flops(name, args)
    return 0.0


# Where a convolution op keeps its weight: aten.convolution(input, weight, ...) and
# aten.convolution_backward(grad_output, input, weight, ...).
_CONV_WEIGHT_ARG = {"convolution": 1, "mkldnn_convolution": 1, "convolution_backward": 2}


def conv_depth(name: str, args: tuple) -> int:
    """The products summed into each output element of a convolution (input channels per
    group x kernel elements: the inner dimension of its GEMM): how well a CPU runs it
    depends on it (LeNet's 1-channel 5 x 5 conv: 25); 0 for any other op."""
    index = _CONV_WEIGHT_ARG.get(name)
    if index is None or len(args) <= index or not isinstance(args[index], torch.Tensor):
        return 0
    return int(math.prod(args[index].shape[1:]))


# Products of two matrices: where they are (addmm's first argument is the bias). Not the
# batched ones (bmm: attention's products of two activations, one kernel over many small
# matrices, which the grid of single products with a weight read from memory does not
# describe: pricing minilm's 36 bmm by it gave 44 ms against 4.1 measured).
_GEMM_ARGS = {"mm": 0, "addmm": 1}


def gemm_shape(name: str, args: tuple) -> tuple[int, ...]:
    """(M, N, K) of a product of two matrices (a CPU runs a one-row product far below a
    square one; advise prices it by its shape); () for other ops."""
    index = _GEMM_ARGS.get(name)
    if index is None or len(args) < index + 2:
        return ()
    a, b = args[index], args[index + 1]
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.dim() < 2:
        return ()
    return int(a.shape[-2]), int(b.shape[-1]), int(a.shape[-1])


# Where a convolution op keeps its input: aten.convolution(input, ...) and
# aten.convolution_backward(grad_output, input, ...).
_CONV_INPUT_ARG = {"convolution": 0, "mkldnn_convolution": 0, "convolution_backward": 1}


def conv_layout(name: str, args: tuple) -> str:
    """A 2-D convolution's input memory format and kernel width, ``"nchw-k5"`` or
    ``"cl-k3"`` (channels-last), ``-odd`` added when its input or output channels are not
    a multiple of 16 (a CPU's vector kernels block channels by 16: 20 -> 50 channels ran
    at half the rate of 16 -> 48 on this session's CPU); "" for any other op (and for 1-D
    and 3-D convolutions)."""
    i, w = _CONV_INPUT_ARG.get(name), _CONV_WEIGHT_ARG.get(name)
    if i is None or w is None or len(args) <= max(i, w):
        return ""
    x, weight = args[i], args[w]
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor) or x.dim() != 4:
        return ""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    odd = weight.shape[0] % 16 or weight.shape[1] % 16
    return f"{'cl' if cl else 'nchw'}-k{int(weight.shape[-1])}{'-odd' if odd else ''}"


def conv_pixels(name: str, args: tuple, out: Any) -> int:
    """Output positions per image of a 2-D convolution (its output's, or for the backward
    its gradient's, H x W): a CPU runs a convolution on 8 x 8 images below one on 28 x 28;
    0 for any other op."""
    if name not in _CONV_INPUT_ARG:
        return 0
    y = args[0] if name == "convolution_backward" else out
    if not isinstance(y, torch.Tensor) or y.dim() != 4:
        return 0
    return int(y.shape[-2] * y.shape[-1])


def _kernels(name: str, inputs: list[torch.Tensor], view: bool) -> int:
    if view or name in _HOST_ONLY:
        return 0
    if name.startswith(("_foreach_", "_fused_")):
        return max(1, -(-len(inputs) // FOREACH_TENSORS_PER_KERNEL))
    return 1


def _dtype(inputs: list[torch.Tensor]) -> str:
    return next((str(t.dtype).removeprefix("torch.") for t in inputs if t.is_floating_point()), "")


class OpRecorder(TorchDispatchMode):
    """Records every op run inside it; ``phase`` is set by the caller between parts."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[OpRecord] = []
        self.phase = "step"
        self.live_bytes = 0
        self.peak_bytes = 0
        self.live_after: list[int] = []  # bytes held after each op: the step's memory curve
        self._seen: set[int] = set()  # data pointers of storages being tracked

    def track(self, tensors: list[torch.Tensor]) -> None:
        """Count these tensors' storages as held (once each) until they are freed."""
        for t in tensors:
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self._seen:
                continue
            size = storage.nbytes()
            self._seen.add(key)
            self.live_bytes += size
            weakref.finalize(storage, self._free, key, size)
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def _free(self, key: int, size: int) -> None:
        self._seen.discard(key)
        self.live_bytes -= size

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs, outputs = _tensors((args, kwargs)), _tensors(out)
        view = _is_view(func)
        name = func.overloadpacket.__name__
        moved = 0 if view else _moved(name, inputs, outputs)
        flops = op_flops(func, args, kwargs, out)
        self.ops.append(
            OpRecord(
                name,
                self.phase,
                flops,
                moved,
                _kernels(name, inputs, view),
                _dtype(inputs),
                conv_depth(name, args),
                gemm_shape(name, args),
                conv_layout(name, args),
                conv_pixels(name, args, out),
            )
        )
        self.track(outputs)
        self.live_after.append(self.live_bytes)
        return out


class OpTimer(TorchDispatchMode):
    """Thread CPU seconds of each op of a step, in dispatch order (the op order
    :class:`OpRecorder` records in): how the CPU calibration prices op classes."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        t0 = time.thread_time()
        out = func(*args, **(kwargs or {}))
        self.seconds.append(time.thread_time() - t0)
        return out
