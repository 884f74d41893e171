"""Benchmarks: micro (matmul, bandwidth), training and inference workloads run by the plain
tutorial baseline and by tensorfab side by side, MFU, CPU-vs-GPU compare, and reports.

``tensorfab bench`` is the command; these functions are its library form.
"""

from tensorfab.bench.compare import bench_compare
from tensorfab.bench.infer import bench_infer
from tensorfab.bench.micro import bench_micro
from tensorfab.bench.progress import BenchProgress
from tensorfab.bench.report import default_out_path, environment, save_results
from tensorfab.bench.train import bench_train
from tensorfab.bench.workloads import WORKLOAD_NAMES, Plan

__all__ = [
    "WORKLOAD_NAMES",
    "BenchProgress",
    "Plan",
    "bench_compare",
    "bench_infer",
    "bench_micro",
    "bench_train",
    "default_out_path",
    "environment",
    "save_results",
]
