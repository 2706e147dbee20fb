"""Runs a command where io_uring is refused, as in a container whose seccomp profile blocks it
(Docker's default does): installs a seccomp filter that fails io_uring_setup with EPERM, then
execs the command. Used by the fallback test of the tcp nukleus's io_uring transport.

Usage: python3 without_io_uring.py PROGRAM [ARGS...]
"""

import ctypes
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1
# io_uring_setup has the same number on every architecture (the unified table since 5.1).
NR_IO_URING_SETUP = 425
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06


def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    arch = AUDIT_ARCH.get(platform.machine())
    if arch is None:
        sys.exit(f"without_io_uring: unknown architecture {platform.machine()}")
    program = b"".join(
        [
            insn(BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
            insn(BPF_JEQ_K, 0, 3, arch),  # another ABI: allow
            insn(BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
            insn(BPF_JEQ_K, 0, 1, NR_IO_URING_SETUP),
            insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),
            insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        ]
    )
    filters = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"without_io_uring: PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        sys.exit(f"without_io_uring: PR_SET_SECCOMP: {os.strerror(ctypes.get_errno())}")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
