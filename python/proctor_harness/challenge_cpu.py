"""The challenge's declared CPU profile, applied in both sandboxes before participant code.

Imported as `proctor_cpu`. A run sees the challenge's declared number of CPUs whatever the
host has: os.cpu_count(), os.sched_getaffinity(), multiprocessing.cpu_count(), torch's
intra-op threads and the OpenMP/MKL/OpenBLAS defaults all report it. Torch splits its
reductions by thread count, so a solution gets the same numbers, and the same accuracy, on
a laptop and on a 64-core server (published Frontier-CS results were produced with 8).
How much CPU time a run may use is a separate quota (a cgroup limit, see the statement).
"""
import os

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def _present(cpus):
    os.cpu_count = lambda: cpus
    os.sched_getaffinity = lambda pid: set(range(cpus))
    if hasattr(os, "process_cpu_count"):
        os.process_cpu_count = lambda: cpus


def simulate_host(cpus):
    """Tests only: make this process look like a host with `cpus` CPUs (what a solution
    and torch would see there without the profile)."""
    _present(cpus)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(cpus)


def apply(threads):
    """Presents `threads` CPUs; call before torch is imported."""
    _present(threads)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    # More threads than the quota's cores must wait for work without spinning.
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch

    torch.set_num_threads(threads)
