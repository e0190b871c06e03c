"""composer.cli.allocator: glibc serves big blocks from its heap, not from fresh mmaps."""

import platform
import subprocess
import sys

import pytest

from tests.subprocesses import ENV, ROOT

# How many of glibc's blocks are mmapped (mallinfo2's hblks) after one 8 MiB malloc, in a fresh process.
MAPPED_BLOCKS = """
import ctypes, ctypes.util, sys
from composer.cli.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype, libc.malloc.restype, libc.malloc.argtypes = MallInfo2, ctypes.c_void_p, [ctypes.c_size_t]
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_an_8_mib_block_comes_from_the_heap_once_tuned():
    def mapped(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", MAPPED_BLOCKS, mode], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, check=True).stdout
        return int(out.strip().splitlines()[-1])

    assert mapped("default") == 1  # glibc's default: a fresh mmap for each big block
    assert mapped("tuned") == 0
