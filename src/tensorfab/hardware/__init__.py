"""What the machine has: CPUs, GPUs (and Apple ``mps``), memory, compute capability,
precisions, the GPU catalogue (datasheet figures), measured peaks, NVML telemetry."""

from tensorfab.hardware.catalogue import Gpu, find_gpu, gpu_by_id, load_catalogue
from tensorfab.hardware.device import (
    cpu_model,
    cuda_index,
    cuda_uuid,
    describe_device,
    device_name,
    mps_available,
    resolve_device,
)
from tensorfab.hardware.host_memory import keep_freed_memory
from tensorfab.hardware.info import collect_info, gpus, memory_bytes, physical_cores
from tensorfab.hardware.nvml import driver_version, energy_mj, gpu_readings
from tensorfab.hardware.peaks import (
    datasheet_peak_tflops,
    default_cache_path,
    measure_matmul_tflops,
    measure_peak_tflops,
    measured_peak_tflops,
    mfu,
    peak_cache_key,
    peak_matmul_size,
)
from tensorfab.hardware.precision import (
    PRECISION_DTYPES,
    PRECISIONS,
    precisions_for_capability,
    resolve_precision,
    supported_precisions,
)
from tensorfab.hardware.threads import THREADS_ENV, ThreadChoice, choose_threads, decide_threads

__all__ = [
    "PRECISIONS",
    "PRECISION_DTYPES",
    "THREADS_ENV",
    "Gpu",
    "ThreadChoice",
    "choose_threads",
    "collect_info",
    "cpu_model",
    "cuda_index",
    "cuda_uuid",
    "datasheet_peak_tflops",
    "decide_threads",
    "default_cache_path",
    "describe_device",
    "device_name",
    "driver_version",
    "energy_mj",
    "find_gpu",
    "gpu_by_id",
    "gpu_readings",
    "gpus",
    "keep_freed_memory",
    "load_catalogue",
    "measure_matmul_tflops",
    "measure_peak_tflops",
    "measured_peak_tflops",
    "memory_bytes",
    "mfu",
    "mps_available",
    "peak_cache_key",
    "peak_matmul_size",
    "physical_cores",
    "precisions_for_capability",
    "resolve_device",
    "resolve_precision",
    "supported_precisions",
]
