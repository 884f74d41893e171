"""Step time, memory, energy and cost of a profiled workload on one device.

Per op: a roofline (its FLOPs at the peak of the precision it computes in, or its bytes
at the memory bandwidth, whichever is longer) plus a fixed latency per kernel. The host
meanwhile dispatches every op (a cost per op, calibrated on this CPU) and makes the next
batch. A GPU runs asynchronously, so a step takes the longer of the device's and the
host's time; a CPU does both in turn. The bound that limits the step is named.

Efficiency factors (``constants.yaml``) come from CPU bench results and from measured
GEMM peaks only; a device's own measured peaks (``--calibrate``) replace the datasheet's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from tensorfab.advise.profile import OpLine, Profile
from tensorfab.hardware import Gpu

GB = 1e9
# A measured figure over one or more axes: a number, or [[x, Curve], ...] read at x
# (linearly in log x between the points, flat beyond them), each entry a curve over the
# next axis: [[depth, share], ...] by convolution depth; [[m, [[n, [[k, tflops]]]]]].
Curve = float | list[list[Any]]
# an op class's roofline share: one, a curve by depth, or per convolution layout
# ("nchw-k5", record.conv_layout) a curve by depth, output positions per image and bytes
Share = Curve | dict[str, Curve]


@dataclass(frozen=True)
class Constants:
    """The model's assumptions, each with its source in ``constants.yaml``."""

    gemm_efficiency: float  # fraction of the datasheet dense peak a GEMM reaches
    memory_efficiency: float  # fraction of the datasheet bandwidth a copy reaches
    kernel_latency_us: float  # device time a kernel costs beyond its roofline
    host_op_us: float  # host time per dispatched op (eager PyTorch, autograd included)
    launch_us: float  # extra host time per CUDA kernel launch
    context_gb: float  # CUDA context and allocator slack, beside the tensors
    memory_usable: float  # fraction of device memory a run can fill
    idle_power: float  # fraction of TDP drawn while the GPU waits
    sources: dict[str, str] = field(default_factory=dict)


@cache
def load_constants() -> Constants:
    raw = yaml.safe_load(resources.files("tensorfab.advise").joinpath("constants.yaml").read_text())
    values = {k: float(v["value"]) for k, v in raw.items()}
    return Constants(**values, sources={k: str(v["source"]) for k, v in raw.items()})


@dataclass(frozen=True)
class Device:
    """What the model needs of a device: effective peaks, bandwidth, memory, power, price."""

    id: str
    name: str
    tflops: dict[str, float]  # effective, per precision the device has
    bandwidth_gb_s: float  # effective
    memory_gb: float | None
    tdp_w: float | None
    price_usd_h: float | None
    asynchronous: bool  # a GPU overlaps its work with the host's
    peak_source: str
    kernel_latency_us: float
    launch_us: float
    # op class -> roofline share: one figure, or [[depth, share], ...] by reduction depth
    efficiency: dict[str, Share] = field(default_factory=dict)
    # a measured run's correction of this device (advise/measured.py): host and device time
    host_scale: float = 1.0
    device_scale: float = 1.0
    # precision -> a matrix product's TFLOP/s by its M, N, K (a CPU's measured grid);
    # a precision without one runs every matrix product at ``tflops``
    gemm_tflops: dict[str, Curve] = field(default_factory=dict)
    # GB/s by the bytes an op moves (a CPU's: its caches, then memory); None: the one figure
    bandwidth_curve: Curve | None = None


# Op classes a device may run below its rooflines (a CPU's, measured by
# benchmarks/advise_calibrate.py, each op of a class timed on its own); an op of no class
# runs at the roofline. Forward and backward are classes of their own: on this CPU max
# pooling's forward (which also writes the indices) ran at 0.07 of the copy bandwidth,
# its backward at 0.59, and one share for both priced LeNet's pooling forward 3x too fast.
OP_CLASSES = {
    "convolution": "convolution",
    "mkldnn_convolution": "convolution",
    "convolution_backward": "convolution_backward",
    "max_pool2d_with_indices": "pooling",
    "avg_pool2d": "pooling",
    "max_pool2d_with_indices_backward": "pooling_backward",
    "avg_pool2d_backward": "pooling_backward",
    # memory-bound ops a CPU runs far below the add's bandwidth (session 16, minilm op by
    # op: dropout's random numbers 0.6 ms priced against 14.8 measured, the embedding's
    # backward, a zeroed table plus a scatter, 2.0 against 20.1)
    "bernoulli_": "random",
    "bernoulli": "random",
    "embedding_dense_backward": "embedding_backward",
}
# Classes limited by their own work per element, not by memory: priced at a fixed rate (a
# share of the one bandwidth figure), whatever cache their bytes are in (LeNet's max-pool
# took 0.93 ms per MB at batch 64 and at 512, 6.6 and 53 MB moved).
RATE_CLASSES = frozenset({"pooling", "pooling_backward", "random"})
# optimizer kernels by prefix: one multi-tensor op per step (fused AdamW 14.9 ms priced
# against 32.1 for minilm; LeNet's foreach Adam ops 4x fast on small tensors)
OP_CLASS_PREFIXES = {"_foreach_": "foreach", "_fused_": "fused_optimizer"}


def op_class(name: str) -> str:
    """The class an op is priced in ("" for none: the roofline)."""
    if name in OP_CLASSES:
        return OP_CLASSES[name]
    return next((c for p, c in OP_CLASS_PREFIXES.items() if name.startswith(p)), "")


def curve_value(curve: Curve, point: tuple[float, ...]) -> float:
    """``curve`` read at ``point`` (one coordinate per axis, in order): linearly in the log
    of each coordinate between the measured points, flat beyond the first and last."""
    if not isinstance(curve, list):
        return float(curve)
    x, rest = max(point[0], 1e-12), point[1:]
    rows = sorted(((float(r[0]), r[1]) for r in curve), key=lambda r: r[0])
    if x <= rows[0][0]:
        return curve_value(rows[0][1], rest)
    for (x0, c0), (x1, c1) in itertools.pairwise(rows):
        if x <= x1:
            w = math.log(x / x0) / math.log(x1 / x0)
            v0, v1 = curve_value(c0, rest), curve_value(c1, rest)
            return v0 + w * (v1 - v0)
    return curve_value(rows[-1][1], rest)


def op_share(
    device: Device, name: str, depth: int = 0, layout: str = "", size: tuple[float, float] = (0, 0)
) -> float:
    """The share of its roofline an op reaches on ``device``: 1.0 outside the op classes;
    a class measured at several reduction depths (convolutions: a CPU runs a 1-channel
    3 x 3 conv at a tenth of the share of a 64-channel one) is read at the op's depth;
    one measured per layout (memory format and kernel width, ``"nchw-k5"``) takes the
    layout's curve (the nearest kernel width of its memory format) at the op's depth,
    then ``size``: its output positions per image and its bytes moved (small images and
    a working set past the cache run slower)."""
    share = device.efficiency.get(op_class(name), 1.0)
    if isinstance(share, dict):
        share = _layout_curve(share, layout)
        return curve_value(share, (float(depth), float(size[0]), float(size[1])))
    return curve_value(share, (float(depth),))


def _layout_curve(curves: dict[str, Curve], layout: str) -> Curve:
    """The curve of ``layout`` ("nchw-k5-odd"), else the nearest: the same memory format
    first, then the same channel alignment, then the nearest kernel width."""
    if layout in curves:
        return curves[layout]

    def parts(key: str) -> tuple[str, int, bool]:
        fmt, _, rest = key.partition("-k")
        width, _, odd = rest.partition("-")
        return fmt, int(width) if width.isdigit() else 3, odd == "odd"

    fmt, width, odd = parts(layout)

    def distance(key: str) -> tuple[bool, bool, int]:
        f, w, o = parts(key)
        return f != fmt, o != odd, abs(w - width)

    return curves[min(curves, key=distance)]


def op_seconds(op: OpLine, batch: int, device: Device, precision: str) -> tuple[float, float]:
    """(seconds its FLOPs take, seconds its bytes take) of one op at ``batch``: a matrix
    product at the device's measured TFLOP/s for its shape where there is a grid for its
    precision, else at the peak; an op class at its measured share of both rooflines."""
    flops, moved = op.at(batch)
    prec = _op_precision(op.dtype, precision, device)
    grid = device.gemm_tflops.get(prec) if op.gemm else None
    if grid is not None:
        tflops, share = curve_value(grid, op.gemm_at(batch)), 1.0
    else:
        tflops, share = (
            device.tflops.get(prec, 0.0),
            op_share(device, op.name, op.depth, op.layout, (op.pixels, moved)),
        )
    t_flops = flops / (tflops * 1e12 * share) if flops and tflops else 0.0
    return t_flops, moved / (bandwidth_at(device, moved, op.name) * GB * share)


def bandwidth_at(device: Device, moved: float, name: str = "") -> float:
    """GB/s of op ``name`` moving ``moved`` bytes: read in the device's curve by size
    where it has one (a CPU: 25 GB/s while the bytes fit its last-level cache, 13 past
    it), else, and for the classes limited by their own work, its one figure."""
    if device.bandwidth_curve is None or op_class(name) in RATE_CLASSES:
        return device.bandwidth_gb_s
    return curve_value(device.bandwidth_curve, (moved,))


def gpu_device(gpu: Gpu, measured: dict[str, Any] | None = None) -> Device:
    """A catalogue GPU at the model's efficiency, or at its own measured figures."""
    c = load_constants()
    measured = measured or {}
    tflops = {p: v * c.gemm_efficiency for p, v in gpu.tflops.items()}
    tflops.update({p: v for p, v in measured.get("tflops", {}).items() if p in gpu.tflops})
    source = (
        "measured (--calibrate)"
        if measured.get("tflops")
        else (f"datasheet x {c.gemm_efficiency:g} (assumed GEMM efficiency)")
    )
    if "host_scale" in measured or "device_scale" in measured:
        source += "; host or device time corrected by a measured run (--calibrate)"
    return Device(
        id=gpu.id,
        name=gpu.name,
        tflops=tflops,
        bandwidth_gb_s=measured.get("bandwidth_gb_s", gpu.bandwidth_gb_s * c.memory_efficiency),
        memory_gb=gpu.memory_gb,
        tdp_w=gpu.tdp_w,
        price_usd_h=measured.get("price_usd_h", gpu.price_usd_h),
        asynchronous=True,
        peak_source=source,
        kernel_latency_us=c.kernel_latency_us,
        launch_us=c.launch_us,
        host_scale=float(measured.get("host_scale", 1.0)),
        device_scale=float(measured.get("device_scale", 1.0)),
    )


def cpu_device(
    name: str,
    tflops: dict[str, float],
    bandwidth_gb_s: float,
    efficiency: dict[str, Share] | None = None,
    gemm_tflops: dict[str, Curve] | None = None,
    bandwidth_curve: Curve | None = None,
) -> Device:
    """This CPU from its measured peaks (``bench micro``) and op-class efficiencies
    (``benchmarks/advise_calibrate.py``): ops run one after another."""
    return Device(
        id="cpu",
        name=name,
        tflops=tflops,
        bandwidth_gb_s=bandwidth_gb_s,
        memory_gb=None,
        tdp_w=None,
        price_usd_h=None,
        asynchronous=False,
        peak_source="measured (bench micro)",
        kernel_latency_us=0.0,
        launch_us=0.0,
        efficiency=dict(efficiency or {}),
        gemm_tflops=dict(gemm_tflops or {}),
        bandwidth_curve=bandwidth_curve,
    )


@dataclass(frozen=True)
class StepTime:
    """A step's time and its parts, in seconds."""

    step_s: float
    device_s: float  # the device's work: rooflines plus kernel latencies
    compute_s: float  # ops whose FLOPs take longer than their bytes
    memory_s: float  # ops whose bytes take longer
    latency_s: float  # kernel latencies
    dispatch_s: float  # host: op dispatch and kernel launches
    input_s: float  # host: making the batch
    bound: str


def _op_precision(dtype: str, precision: str, device: Device) -> str:
    """The peak an op's FLOPs run at: its input dtype; fp32 uses TF32 where the run allows."""
    if dtype in ("bfloat16", "float16"):
        return "bf16" if dtype == "bfloat16" else "fp16"
    if precision != "fp32" and "tf32" in device.tflops:
        return "tf32"
    return "fp32"


def _device_parts(profile: Profile, device: Device, precision: str) -> tuple[float, float, float]:
    """(compute-bound seconds, memory-bound seconds, kernel latency seconds) of the ops."""
    compute = memory = 0.0
    for op in profile.ops:
        t_flops, t_bytes = op_seconds(op, profile.batch_size, device, precision)
        if t_flops > t_bytes:
            compute += t_flops
        else:
            memory += t_bytes
    latency = profile.kernels() * device.kernel_latency_us * 1e-6
    return compute, memory, latency


def _bound(parts: dict[str, float]) -> str:
    return max(parts, key=lambda k: parts[k])


def host_dispatch_s(profile: Profile, calibrated_op_us: float | None = None) -> float:
    """Host seconds a step spends outside kernels (before launches): per op as calibrated
    on the GPU's own host (--calibrate), else measured on this workload on the meta
    device (advise/host.py), else the assumed cost per op of constants.yaml."""
    if calibrated_op_us is None and profile.host_s is not None:
        return profile.host_s
    per_op = load_constants().host_op_us if calibrated_op_us is None else calibrated_op_us
    return profile.host_ops * per_op * 1e-6


def step_time(
    profile: Profile, device: Device, precision: str, host_op_us: float | None = None
) -> StepTime:
    """Predicted seconds per step of ``profile`` on ``device`` in ``precision``;
    ``host_op_us``: a calibrated host cost per op that replaces the profile's own."""
    compute, memory, latency = (
        x * device.device_scale for x in _device_parts(profile, device, precision)
    )
    launches = profile.kernels() * device.launch_us * 1e-6
    dispatch = (host_dispatch_s(profile, host_op_us) + launches) * device.host_scale
    host_input = profile.host_input_s * device.host_scale
    device_s, host_s = compute + memory + latency, dispatch + host_input
    step = max(device_s, host_s) if device.asynchronous else device_s + host_s
    if device.asynchronous and host_s > device_s:
        parts = {"launch overhead": dispatch, "host input": host_input}
    else:
        parts = {"compute": compute, "memory bandwidth": memory, "launch overhead": latency}
        if not device.asynchronous:
            parts.update({"launch overhead": latency + dispatch, "host input": host_input})
    return StepTime(step, device_s, compute, memory, latency, dispatch, host_input, _bound(parts))


def memory_needed(profile: Profile, batch: int, device: Device) -> float:
    """Peak bytes of a step at ``batch`` on ``device`` (tensors, plus a GPU's context)."""
    extra = load_constants().context_gb * GB if device.asynchronous else 0.0
    return profile.memory_at(batch) + extra


def largest_batch(profile: Profile, device: Device) -> int | None:
    """The largest batch whose step fits the device's usable memory (None: no limit known,
    or none: the step's memory does not grow with the batch)."""
    if device.memory_gb is None:
        return None
    c = load_constants()
    extra = memory_needed(profile, 0, device) - profile.memory_at(0)
    return profile.largest_batch(c.memory_usable * device.memory_gb * GB - extra)


def energy_j(time_s: StepTime, seconds: float, device: Device) -> float | None:
    """Joules over ``seconds``: idle power plus the rest of TDP for the busy fraction."""
    if device.tdp_w is None:
        return None
    idle = load_constants().idle_power
    busy = min(1.0, (time_s.compute_s + time_s.memory_s) / max(time_s.step_s, 1e-12))
    return device.tdp_w * (idle + (1 - idle) * busy) * seconds


def cpu_from_calibration(data: dict[str, Any]) -> Device:
    """This CPU as ``benchmarks/advise_calibrate.py`` measured it (one thread): matmul
    peaks, copy bandwidth, op classes below them, matrix products by shape."""
    return cpu_device(
        data.get("device", "cpu"),
        data["tflops"],
        data["bandwidth_gb_s"],
        data.get("efficiency"),
        data.get("gemm_tflops"),
        data.get("bandwidth_curve"),
    )
