"""Operating-system isolation for snippets: namespaces, mounts, limits, identities, clean-up.

Python 3.11 has no ``os.unshare`` or ``mount``, so the few Linux calls needed go through
ctypes. Everything here is a small step the worker composes; each step raises ``OSError`` when
the machine does not allow it, so the worker can report that layer as unavailable and carry on.
Only the standard library is imported: the worker calls :func:`unshare` before torch starts
threads (``CLONE_NEWNS`` is refused to a multi-threaded process).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, -1)
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4

_MOUNT_OPTION_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def _path(path: str | Path | None) -> bytes | None:
    return None if path is None else os.fsencode(str(path))


def unshare(flags: int) -> None:
    """Move this process into new namespaces (children for ``CLONE_NEWPID``)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(
    source: str | None, target: str | Path, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            _path(source),
            _path(target),
            _path(fstype),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {target}",
    )


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Die with ``sig`` when the parent dies, so no process outlives the one supervising it."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0), "prctl(PDEATHSIG)")


def set_no_new_privs() -> None:
    """Forbid regaining privileges through setuid binaries or file capabilities."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0), "prctl(NO_NEW_PRIVS)")


# --------------------------------------------------------------------------- capabilities


def namespaces_available() -> bool:
    """Whether a child of this process may create PID, mount, IPC and network namespaces."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


# --------------------------------------------------------------------------- the worker's view


@dataclass(frozen=True)
class MountPlan:
    """What the worker's private mount namespace hides and what must stay reachable."""

    hide: tuple[Path, ...]
    """Folders and files replaced by empty, read-only ones (bank, reference, checkout, ...)."""
    keep: tuple[Path, ...]
    """Folders the snippet's process still needs (the interpreter's library, torch)."""


def _open_tree(path: Path) -> int:
    return _check(
        _libc.syscall(
            ctypes.c_long(SYS_OPEN_TREE),
            ctypes.c_int(AT_FDCWD),
            _path(path),
            ctypes.c_uint(OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC),
        ),
        f"open_tree {path}",
    )


def _move_mount(fd: int, target: Path) -> None:
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_MOVE_MOUNT),
            ctypes.c_int(fd),
            b"",
            ctypes.c_int(AT_FDCWD),
            _path(target),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
        ),
        f"move_mount {target}",
    )


def mask(directory: Path, keep_names: tuple[str, ...] = ()) -> None:
    """Cover ``directory`` with an empty read-only folder, re-exposing only ``keep_names``.

    The kept entries are cloned as detached mounts before the cover goes on, then moved into
    place, so their contents stay the originals while everything beside them disappears.
    """
    clones = [(name, _open_tree(directory / name)) for name in keep_names]
    try:
        mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for name, fd in clones:
            target = directory / name
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                target.mkdir(mode=0o755)
            else:
                target.touch(mode=0o644)
            _move_mount(fd, target)
        mount(None, directory, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    finally:
        for _, fd in clones:
            os.close(fd)


def hide_file(path: Path) -> None:
    """Replace a file with an empty, read-only one (a bind of /dev/null)."""
    mount("/dev/null", path, None, MS_BIND)
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _traversable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def plan_masks(plan: MountPlan) -> list[tuple[Path, tuple[str, ...]]]:
    """(folder, kept child names) for every hidden folder and every folder that would stop an
    unprivileged process from reaching a kept path, outermost first."""
    keeps = [k.resolve() for k in plan.keep if k.exists()]
    masks: dict[Path, set[str]] = {}
    for hidden in (h.resolve() for h in plan.hide if h.exists()):
        if hidden.is_dir():
            masks.setdefault(hidden, set())
    for keep in keeps:
        for ancestor in reversed(keep.parents):
            if ancestor == Path("/"):
                continue
            if ancestor in masks or not _traversable_by_others(ancestor):
                masks.setdefault(ancestor, set())
    for folder, kept in masks.items():
        for keep in keeps:
            if keep != folder and folder in keep.parents:
                kept.add(keep.relative_to(folder).parts[0])
    for folder in list(masks):
        if any(folder == k or k in folder.parents for k in keeps):
            del masks[folder]  # never cover what must stay reachable
    ordered = sorted(masks.items(), key=lambda m: len(m[0].parts))
    return [(folder, tuple(sorted(kept))) for folder, kept in ordered if _reachable(folder, masks)]


def _reachable(path: Path, masks: dict[Path, set[str]]) -> bool:
    """Whether ``path`` is still visible once the masks above it are on (else skip it)."""
    for folder, kept in masks.items():
        if folder in path.parents and path.relative_to(folder).parts[0] not in kept:
            return False
    return True


def mount_points() -> list[tuple[str, int]]:
    """(mount point, preserved flags) of every mount this process sees, from mountinfo."""
    points: list[tuple[str, int]] = []
    with open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            fields = line.split()
            point = fields[4].decode("unicode_escape").encode("latin-1").decode()
            flags = 0
            for option in fields[5].decode().split(","):
                flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
            points.append((point, flags))
    return points


def make_read_only() -> list[str]:
    """Remount every mount read-only; returns the mount points that refused."""
    refused = []
    for point, flags in mount_points():
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            refused.append(point)
    return refused


def apply_mount_plan(plan: MountPlan) -> None:
    """Make this (already private) mount namespace's hidden paths empty and everything read-only."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for folder, kept in plan_masks(plan):
        mask(folder, kept)
    for hidden in plan.hide:
        if hidden.exists() and not hidden.is_dir():
            hide_file(hidden)  # a file under a masked folder is already gone: exists() is False
    make_read_only()


SYS_KEPT_FOR_CPU = ("devices/system/cpu",)
"""What stays of /sys: CPU topology (libraries size thread pools from it; it says nothing of
the host's network, processes or devices)."""
SYS_KEPT_FOR_CUDA = ("bus/pci", "devices")
"""Added where an NVIDIA device is present: the CUDA driver walks the PCI tree to find it."""


def empty_sys(kept: tuple[str, ...]) -> None:
    """Cover /sys with an empty read-only folder, re-exposing only the ``kept`` subpaths.

    Each level is a :func:`mask` of its own, so keeping ``devices/system/cpu`` shows nothing
    else of ``devices`` or ``devices/system``: not the host's network interfaces
    (``class/net``), not the cgroup trees listing host pids (``fs/cgroup``).
    """
    levels: dict[Path, set[str]] = {}
    for relative in kept:
        parts = Path(relative).parts
        if not (Path("/sys") / relative).exists():
            continue
        for depth in range(len(parts)):
            levels.setdefault(Path("/sys", *parts[:depth]), set()).add(parts[depth])
    levels.setdefault(Path("/sys"), set())
    for folder in sorted(levels, key=lambda f: len(f.parts)):
        mask(folder, tuple(sorted(levels[folder])))


SYSTEM_LIBRARIES = (
    "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/lib32", "/lib32",
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/nsswitch.conf",
)  # fmt: skip
"""What the interpreter and torch load besides their own folders: shared libraries and the
loader's cache. Symbolic links among them (merged /usr) are copied as links."""
CUDA_LIBRARIES = ("/usr/local/cuda", "/usr/local/nvidia")
"""Where container images put the CUDA driver's libraries, kept when an NVIDIA device exists."""
DEVICES = ("null", "zero", "full", "random", "urandom")
NEW_ROOT = Path("/tmp/vaequiz-root")


def _recreate(path: Path, new_root: Path) -> Path | None:
    """Make ``path``'s place in ``new_root`` (folders along the way, a link for a link, an
    empty folder or file to bind onto); None where nothing should be bound."""
    target = new_root / path.relative_to("/")
    for parent in reversed(path.parents):
        inside = new_root / parent.relative_to("/")
        if parent.is_symlink() and not inside.exists() and not inside.is_symlink():
            os.symlink(os.readlink(parent), inside)
            return None  # reached through the link's own target, kept separately
        inside.mkdir(mode=0o755, exist_ok=True)
    if target.exists() or target.is_symlink():
        return None
    if path.is_symlink():
        os.symlink(os.readlink(path), target)
        return None
    if path.is_dir():
        target.mkdir(mode=0o755)
    else:
        target.touch(mode=0o644)
    return target


def enter_allow_listed_root(keep: tuple[Path, ...], cuda: bool = False) -> None:
    """Make this mount namespace's root a fresh tmpfs holding only ``keep`` (bound read-only
    by the caller's later :func:`make_read_only`), the system libraries, a few devices, /proc
    and /sys as they are; everything else of the host is absent, not merely unreadable.

    Bound folders are recursive clones of this namespace's view, so paths covered by the
    mount plan inside them stay covered.
    """
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    NEW_ROOT.mkdir(mode=0o755)
    mount("tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    system = (*SYSTEM_LIBRARIES, *(CUDA_LIBRARIES if cuda else ()), "/proc", "/sys")
    wanted = [Path(p) for p in system] + [k.resolve() for k in keep]
    for path in sorted({p for p in wanted if p.exists() or p.is_symlink()}, key=lambda p: len(p.parts)):
        target = _recreate(path, NEW_ROOT)
        if target is not None:
            mount(str(path), target, None, MS_BIND | MS_REC)
    (NEW_ROOT / "dev").mkdir(mode=0o755, exist_ok=True)
    nvidia = [d.name for d in Path("/dev").glob("nvidia*")] if cuda else []
    for name in (*DEVICES, *nvidia):
        device = Path("/dev") / name
        if device.is_dir():  # /dev/nvidia-caps
            (NEW_ROOT / "dev" / name).mkdir(mode=0o755)
            mount(str(device), NEW_ROOT / "dev" / name, None, MS_BIND | MS_REC)
        elif device.exists():
            (NEW_ROOT / "dev" / name).touch(mode=0o666)
            mount(str(device), NEW_ROOT / "dev" / name, None, MS_BIND)
    for folder in (*PRIVATE_TEMP, Path("/etc")):
        (NEW_ROOT / folder.relative_to("/")).mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chdir(NEW_ROOT)
    _check(_libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), b".", b"."), "pivot_root")
    unmount(".")  # the old root, now stacked on the new one
    os.chdir("/")


# --------------------------------------------------------------------------- per snippet


SCRATCH = Path("/tmp/work")
PRIVATE_TEMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def mount_private_temp(size_mb: int) -> None:
    """Empty tmpfs temp folders for this namespace (wiped between submissions by the worker)."""
    for folder in PRIVATE_TEMP:
        if folder.is_dir():
            mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=1777")


MNT_DETACH = 2


def unmount(target: str | Path) -> None:
    """Detach the mount at ``target`` (freed once nothing uses it any more)."""
    _check(_libc.umount2(_path(target), ctypes.c_int(MNT_DETACH)), f"umount {target}")


def renew_private_temp(size_mb: int) -> None:
    """Leave each private temp folder empty for the next answer: a fresh tmpfs for any that
    holds anything, the scratch folder alone removed from one that holds nothing else.

    Unmounting drops whatever a snippet built in one step, however deep or large: a walk
    fails on paths longer than PATH_MAX and takes seconds over 200,000 files. Most answers
    build nothing, and a mount costs about a millisecond, so an untouched tmpfs (its inode
    count says so, whatever the names) is kept.
    """
    for folder in PRIVATE_TEMP:
        if not folder.is_dir():
            continue
        in_use = inodes_in_use(folder)
        if in_use == 1:
            continue  # only the folder itself
        if folder == SCRATCH.parent and in_use == 2 and SCRATCH.is_dir() and not SCRATCH.is_symlink():
            try:
                os.rmdir(SCRATCH)  # the one other inode is the scratch folder, so it is empty
                continue
            except OSError:
                pass
        unmount(folder)
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=1777")
        _temp_sizes[folder] = size_mb


_temp_sizes: dict[Path, int] = {}


def resize_private_temp(size_mb: int) -> None:
    """Set each private temp folder's size (a remount, only when it changes)."""
    for folder in PRIVATE_TEMP:
        if folder.is_dir() and _temp_sizes.get(folder) != size_mb:
            mount(None, folder, None, MS_REMOUNT | MS_NOSUID | MS_NODEV, f"size={size_mb}m")
            _temp_sizes[folder] = size_mb


def inodes_in_use(folder: Path) -> int:
    """Files, folders and other entries in the file system mounted at ``folder``, root included."""
    stats = os.statvfs(folder)
    return stats.f_files - stats.f_ffree


def mount_fresh_proc() -> None:
    """A /proc that shows only this PID namespace (call as its PID 1)."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def wipe(folder: Path) -> None:
    """Delete everything inside ``folder`` (not the folder itself), never following links."""
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            wipe(Path(entry.path))
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)


def make_scratch(owner: int) -> Path:
    """A fresh scratch folder only ``owner`` may use, inside the private /tmp."""
    SCRATCH.mkdir(mode=0o700)
    os.chown(SCRATCH, owner, owner)
    return SCRATCH


_IPC_RMID = 0
_SYSV_REMOVERS = (("shm", "shmctl", 1), ("sem", "semctl", 1), ("msg", "msgctl", 1))


def remove_sysv_ipc() -> None:
    """Remove every System V shared memory segment, semaphore set and message queue in this
    IPC namespace, so nothing one snippet leaves there reaches the next."""
    for kind, call, id_column in _SYSV_REMOVERS:
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            ipc_id = int(row.split()[id_column])
            if call == "semctl":
                _libc.semctl(ctypes.c_int(ipc_id), 0, _IPC_RMID)
            else:
                getattr(_libc, call)(ctypes.c_int(ipc_id), _IPC_RMID, None)


def kill_everything_else() -> None:
    """SIGKILL every process this one may signal, except itself (and the namespace's init).

    Called by the PID 1 of a namespace, it empties the namespace in one step: the kernel refuses
    forks that race with it. Called by an unprivileged uid, it kills that uid's processes.
    """
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap_all(block: bool) -> None:
    """Collect every exited child (orphans are re-parented to this process)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def set_child_subreaper() -> None:
    """Adopt orphaned descendants, so they can be reaped here rather than by the system's init."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0), "prctl(SUBREAPER)")


def drop_privileges(uid: int) -> None:
    """Become an unprivileged user (no groups, no way back) so RLIMIT_NPROC and file modes apply."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def set_limit(which: int, value: int) -> None:
    resource.setrlimit(which, (value, value))


MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
MADV_WIPEONFORK = 18
HUGE_PAGE = 1 << 21


def private_memory(size: int) -> mmap.mmap:
    """Anonymous memory that a forked child inherits as zeros (``MADV_WIPEONFORK``).

    The worker reads a snippet's output and results into such buffers and unmaps them after
    the answer, so no byte of one answer is ever in memory the next answer's child is forked
    with. Raises ``OSError`` where the kernel (before 4.14) lacks the advice.
    """
    memory = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE)
    try:
        memory.madvise(MADV_WIPEONFORK)
    except OSError:
        memory.close()
        raise
    return memory


def trim_heap() -> None:
    """Give freed malloc memory back to the system (glibc only; a no-op elsewhere)."""
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def collapse_into_huge_pages() -> int:
    """Back this process's anonymous memory with 2 MB pages where the kernel allows it.

    Fork copies one page-table entry per page, so fewer, larger pages make every fork
    cheaper. Returns the number of regions collapsed (0 where unsupported).
    """
    madvise = _libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    collapsed = 0
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        name = fields[5] if len(fields) > 5 else ""
        if not fields[1].startswith("rw") or name not in ("", "[heap]"):
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        start = (low + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
        end = high & ~(HUGE_PAGE - 1)
        if end - start >= HUGE_PAGE:
            madvise(start, end - start, MADV_HUGEPAGE)
            collapsed += madvise(start, end - start, MADV_COLLAPSE) == 0
    return collapsed


def address_space_in_use() -> int:
    """This process's mapped virtual memory in bytes (torch maps a lot before any snippet)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
