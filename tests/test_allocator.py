"""keep_freed_memory: large tensors come from malloc's heap, not from fresh mappings."""

import ctypes
import subprocess
import sys
import textwrap

import pytest

GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

PROBE = textwrap.dedent(
    """
    import ctypes
    import torch
    from sgmcmc.allocator import keep_freed_memory

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2

    def mapped_while_alive():
        before = libc.mallinfo2().hblkhd
        tensor = torch.ones(4 << 20)  # 16 MiB
        return libc.mallinfo2().hblkhd - before

    print(mapped_while_alive() >= 16 << 20, keep_freed_memory(), mapped_while_alive())
    """
)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_large_tensors_come_from_the_heap_once_applied():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    mapped_before, applied, mapped_after = out.stdout.split()
    assert (mapped_before, applied, mapped_after) == ("True", "True", "0")
