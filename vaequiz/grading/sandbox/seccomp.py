"""A seccomp filter for snippets: the kernel refuses calls a snippet never needs.

Docker's default profile is the anchor: no keyrings, ptrace, mounts, new namespaces, io_uring,
perf events, BPF, userfaultfd, kexec or kernel modules, and no ``socket()`` at all (the
snippet needs none; ``socketpair(AF_UNIX)`` stays for libraries that signal between threads).
The classic BPF program is written here rather than through libseccomp: it is a few dozen
instructions, needs no package on the machine, and is built once per worker and installed in
each child in one ``prctl``. Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

_COMMON_LATE = {  # numbered alike on every architecture since Linux 5.1
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
}
SYSCALLS = {
    "x86_64": {
        "ptrace": 101, "syslog": 103, "vhangup": 153, "pivot_root": 155, "adjtimex": 159,
        "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
        "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
        "init_module": 175, "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212,
        "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249,
        "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
        "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305,
        "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
        "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
        "socket": 41, "socketpair": 53, "clone": 56,
        **_COMMON_LATE,
    },
    "aarch64": {
        "ptrace": 117, "syslog": 116, "vhangup": 58, "pivot_root": 41, "adjtimex": 171,
        "chroot": 51, "acct": 89, "settimeofday": 170, "mount": 40, "umount2": 39,
        "swapon": 224, "swapoff": 225, "reboot": 142,
        "init_module": 105, "delete_module": 106, "quotactl": 60, "lookup_dcookie": 18,
        "clock_settime": 112, "kexec_load": 104, "add_key": 217, "request_key": 218,
        "keyctl": 219, "unshare": 97, "perf_event_open": 241, "fanotify_init": 262,
        "name_to_handle_at": 264, "open_by_handle_at": 265, "clock_adjtime": 266,
        "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "finit_module": 273, "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282,
        "socket": 198, "socketpair": 199, "clone": 220,
        **_COMMON_LATE,
    },
}  # fmt: skip
"""Numbers from the kernel's unistd headers (tests compare them where the headers exist)."""

DENIED = (
    "add_key", "request_key", "keyctl",  # keyrings outlive the answer (they belong to the uid)
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
    "unshare", "setns",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "perf_event_open", "bpf", "userfaultfd", "fanotify_init", "lookup_dcookie",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "syslog", "vhangup", "acct", "swapon", "swapoff", "reboot", "quotactl",
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "iopl", "ioperm",
    "socket",
)  # fmt: skip
"""Refused with EPERM. ``clone3`` is refused with ENOSYS (its flags sit behind a pointer the
filter cannot read), so the C library falls back to ``clone``, whose flags it can."""

CLONE_NEW_NAMESPACES = 0x7E020000 | 0x02000000 | 0x00000080
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET and NEWTIME."""
AF_UNIX = 1

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
_NR, _ARCH, _ARG0 = 0, 4, 16
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

Instruction = tuple[int, int, int, int]


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> Instruction:
    return (code, jt, jf, k)


def _rule(number: int, body: list[Instruction]) -> list[Instruction]:
    """``body`` runs when the call number is ``number``; otherwise control skips past it."""
    return [_op(_JEQ_K, number, 0, len(body)), *body]


def program(machine: str) -> list[Instruction]:
    """The filter for ``machine`` (``os.uname().machine``); KeyError where there is none."""
    numbers = SYSCALLS[machine]
    deny = _op(_RET_K, RET_ERRNO | errno.EPERM)
    allow = _op(_RET_K, RET_ALLOW)
    code = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ_K, AUDIT_ARCH[machine], 1, 0),
        _op(_RET_K, RET_KILL_PROCESS),  # another ABI (i386, x32) would bypass the numbers
        _op(_LD_W_ABS, _NR),
    ]
    if machine == "x86_64":
        code += [_op(_JGE_K, X32_SYSCALL_BIT, 0, 1), deny]
    for name in DENIED:
        code += _rule(numbers[name], [deny])
    code += _rule(numbers["clone3"], [_op(_RET_K, RET_ERRNO | errno.ENOSYS)])
    code += _rule(
        numbers["clone"],
        [_op(_LD_W_ABS, _ARG0), _op(_JSET_K, CLONE_NEW_NAMESPACES, 0, 1), deny, allow],
    )
    code += _rule(
        numbers["socketpair"],
        [_op(_LD_W_ABS, _ARG0), _op(_JEQ_K, AF_UNIX, 0, 1), allow, deny],
    )
    return [*code, allow]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass
class Filter:
    """A program ready to install: built in the worker, installed in each child."""

    instructions: ctypes.Array[ctypes.c_char]
    header: _SockFprog

    @classmethod
    def for_this_machine(cls) -> Filter:
        """Raises ``KeyError`` on an architecture without a syscall table here."""
        code = program(os.uname().machine)
        packed = b"".join(struct.pack("=HBBI", *instruction) for instruction in code)
        instructions = ctypes.create_string_buffer(packed, len(packed))
        header = _SockFprog(len(code), ctypes.cast(instructions, ctypes.c_void_p))
        return cls(instructions, header)

    def install(self) -> None:
        """Apply to this process and everything it starts (needs ``no_new_privs`` first)."""
        libc = ctypes.CDLL(None, use_errno=True)
        result = libc.prctl(
            PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(self.header), 0, 0
        )
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp: {os.strerror(err)}")
