"""A memory cgroup per worker: the limit that also counts tmpfs files, memfds and IPC segments.

RLIMIT_AS bounds one process's address space only; pages a snippet leaves in a tmpfs file, a
memfd or a System V segment escape it. The serving worker joins its cgroup once (moving a
process between cgroups waits for an RCU grace period, about 14 ms here, too slow per answer),
so every runner is born in it. Before each fork the limit is set to the request's memory limit
(plus a margin for inherited pages the runner copies on write) with no swap, so the kernel
counts all of the answer's memory and kills the runner past the limit. The runner and its
children are the ones killed (their ``oom_score_adj`` is 1000; the worker's -1000 where the
machine grants CAP_SYS_RESOURCE), and the private tmpfs mounts are sized so that what outlives
a killed runner leaves the worker room.

Both hierarchies are handled: cgroup v2 (``memory.max``), and v1's memory controller
(``memory.limit_in_bytes``), as on machines that mount v1 controllers beside a v2 tree
without controllers. The control files are opened once, before the worker's file system turns
read-only, and written through those descriptors. Standard library only.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

COPY_ON_WRITE_MARGIN_MB = 64
"""Allowed beyond the request's limit: inherited pages the runner touches are charged too."""
UNLIMITED = None


class CgroupUnavailable(Exception):
    """Why this machine offers no memory cgroup to this process (a sentence)."""


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, super options) of every cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            before, _, after = line.partition(" - ")
            fstype, _, options = after.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((before.split()[4], fstype, set(options.split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 path."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup") as groups:
        for line in groups:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def find_memory_parent() -> tuple[Path, int]:
    """The cgroup folder to create worker cgroups in, and its hierarchy version (1 or 2)."""
    own = _own_paths()
    mounts = _mounts()
    for point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            folder = Path(point) / own[""].lstrip("/")
            controllers = (folder / "cgroup.controllers").read_text().split()
            if "memory" in controllers:
                enabled = (folder / "cgroup.subtree_control").read_text().split()
                if "memory" not in enabled:
                    try:
                        (folder / "cgroup.subtree_control").write_text("+memory")
                    except OSError as err:
                        raise CgroupUnavailable(
                            f"cannot enable the v2 memory controller under {folder}: "
                            f"{err.strerror}"
                        ) from None
                return folder, 2
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "memory" in options and "memory" in own:
            return Path(point) / own["memory"].lstrip("/"), 1
    raise CgroupUnavailable("no memory controller is mounted (neither cgroup v2 nor v1)")


@dataclass
class MemoryCgroup:
    """One worker's cgroup, through descriptors opened while the file system was writable."""

    path: Path
    version: int
    procs: int
    limit: int
    swap_limit: int | None
    events: int
    current_mb: int = -1
    oom_kills_seen: int = 0

    @classmethod
    def create(cls, name: str) -> MemoryCgroup:
        """Create (or reuse) ``name`` under this process's memory cgroup; raises
        :class:`CgroupUnavailable` with the reason when it cannot."""
        parent, version = find_memory_parent()
        path = parent / name
        try:
            path.mkdir(exist_ok=True)
            if version == 2:
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
                files = ("memory.max", None, "memory.events")
            else:
                files = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control")
            procs = os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            limit = os.open(path / files[0], os.O_WRONLY | os.O_CLOEXEC)
            swap = None
            if files[1] and (path / files[1]).exists():
                swap = os.open(path / files[1], os.O_WRONLY | os.O_CLOEXEC)
            events = os.open(path / files[2], os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise CgroupUnavailable(f"cannot set up {path}: {err.strerror}") from None
        cgroup = cls(path, version, procs, limit, swap, events)
        cgroup.oom_kills_seen = cgroup.oom_kills()
        return cgroup

    def set_limit_mb(self, megabytes: int | None) -> None:
        """Cap the cgroup's memory (and memory plus swap, so nothing is swapped out).

        Where v1 refuses a limit below what the cgroup still holds (page cache of files the
        last answer read), the higher limit stays for this answer; RLIMIT_AS still applies.
        """
        wanted = (1 << 62) if megabytes is None else megabytes
        if wanted == self.current_mb:
            return
        if megabytes is None:
            value = b"max" if self.version == 2 else b"-1"
        else:
            value = str((megabytes + COPY_ON_WRITE_MARGIN_MB) << 20).encode()
        raising = 0 <= self.current_mb < wanted  # a new cgroup starts unlimited
        try:
            # v1 keeps memory+swap >= memory at every step: raise it first, lower it last.
            if raising and self.swap_limit is not None:
                os.pwrite(self.swap_limit, value, 0)
            os.pwrite(self.limit, value, 0)
            if not raising and self.swap_limit is not None:
                os.pwrite(self.swap_limit, value, 0)
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            return
        self.current_mb = wanted

    def join(self) -> None:
        """Move the calling process into the cgroup (its children are born there), never to be
        chosen by the kernel's OOM killer where CAP_SYS_RESOURCE allows saying so (runners
        set 1000 for themselves, so they are chosen first either way)."""
        os.pwrite(self.procs, b"0", 0)
        try:
            set_oom_score_adjustment(-1000)
        except PermissionError:
            pass

    def oom_kills(self) -> int:
        """How many processes the kernel has killed in this cgroup for memory, ever."""
        text = os.pread(self.events, 4096, 0).decode()
        for line in text.splitlines():
            key, _, count = line.partition(" ")
            if key == "oom_kill":
                return int(count)
        return 0

    def new_oom_kill(self) -> bool:
        """Whether the kernel killed a process for memory since the last call."""
        count = self.oom_kills()
        killed = count > self.oom_kills_seen
        self.oom_kills_seen = count
        return killed

    def descriptors(self) -> tuple[int, ...]:
        return tuple(fd for fd in (self.procs, self.limit, self.swap_limit, self.events) if fd)


def set_oom_score_adjustment(value: int) -> None:
    """How willingly the OOM killer picks this process (-1000 never, 1000 first)."""
    with open("/proc/self/oom_score_adj", "w") as adjustment:
        adjustment.write(str(value))


def worker_cgroup_name(uid: int | None) -> str:
    """The cgroup of the worker serving slot ``uid`` (slot uids are unique to one sandbox)."""
    return f"vaequiz-{uid}"


def remove(name: str, attempts: int = 50) -> None:
    """Remove a worker's cgroup, if any, once its processes are gone (they may take a moment
    to die); called by the grader, which shares the worker's parent cgroup."""
    import time

    try:
        path = find_memory_parent()[0] / name
    except (CgroupUnavailable, OSError):
        return
    for _ in range(attempts):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY:
                return
            time.sleep(0.02)
