"""Which GPU for a workload: a profile measured on the CPU, a per-op roofline model over
the GPU catalogue, and the answer (time, memory, energy, cost, the limiting bound)."""

from tensorfab.advise.advise import Advice, advise, select_gpus
from tensorfab.advise.profile import Profile, SpecProfiler, profile_spec
from tensorfab.advise.workloads import NAMED, profile_named

__all__ = [
    "NAMED",
    "Advice",
    "Profile",
    "SpecProfiler",
    "advise",
    "profile_named",
    "profile_spec",
    "select_gpus",
]
