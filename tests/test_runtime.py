"""vidattn.runtime: the glibc allocator tuning really stops large feature maps from being page-faulted in again."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from vidattn.runtime import tune_cpu_allocator
tuned = tune_cpu_allocator()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):  # 64 MB: above glibc's largest adaptive mmap threshold (32 MiB); warm the heap up
    x = torch.ones(16 << 20)
    del x
start = faults()
for _ in range(5):
    x = torch.ones(16 << 20)
    del x
print(tuned, faults() - start)
"""


def _probe(allocator: str) -> tuple[bool, int]:
    env = {**os.environ, "VIDATTN_CPU_ALLOCATOR": allocator}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned == "True", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_allocator_reuses_large_blocks_instead_of_faulting_them_in():
    tuned, tuned_faults = _probe("auto")
    untouched, system_faults = _probe("system")
    assert tuned and not untouched
    pages = 5 * (64 << 20) // 4096
    assert system_faults > pages // 2  # glibc maps and faults in every 64 MB block anew
    # the tuned heap hands the same pages back (glibc's aligned placement occasionally lands one block on
    # fresh pages during the first few rounds, so allow one of the five)
    assert tuned_faults < pages // 4
