"""CPU seconds spent on the host while one tool runs, by process group.

On a 2-core host the benchmark is CPU-bound: every tool competes with etcd starting, the
machines' sshd and systemd, and (for orbiter) its worker and the Temporal server. Knowing who
burns the cycles says what to optimise. Reads /proc only (Linux); a process that exited during
the span is counted in its parent's children times once reaped, so short-lived ssh sessions
and systemctl calls land on the machines' sshd.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _group(comm: str, cmdline: str) -> str:
    if comm == "etcd":
        return "etcd"
    if comm.startswith("sshd"):
        return "sshd (machines)"
    if comm == "systemd" or comm.startswith("systemd-") or comm == "(sd-pam)":
        return "systemd (machines)"
    if "temporal" in comm or "temporal" in cmdline.split(" ")[0]:
        return "temporal server"
    if "orbiter worker" in cmdline or cmdline.endswith("/orbiter worker"):
        return "orbiter worker"
    if "etcd_bootstrap.py" in cmdline:
        return "bench harness"
    if comm in ("ssh", "bash", "sh", "ansible-playboo", "pyinfra", "python3", "python", "git"):
        return comm
    return "other"


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (group, cpu seconds incl. reaped children)."""
    out: dict[int, tuple[str, float]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = sum(int(x) for x in fields[11:15]) / TICK
        out[int(proc.name)] = (_group(comm, cmdline), cpu)
    return out


def busy() -> float:
    """CPU seconds all cores spent not idle since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (sum(int(x) for x in fields) - int(fields[3]) - int(fields[4])) / TICK


@dataclass
class CpuSpan:
    """Take `start()` before the timed part and `stop()` after it."""

    before: dict[int, tuple[str, float]] | None = None
    busy0: float = 0.0

    def start(self) -> None:
        self.before = snapshot()
        self.busy0 = busy()

    def stop(self) -> dict[str, float]:
        """Seconds per group, plus `all` (every core, any process) and `unaccounted`."""
        after, total = snapshot(), busy() - self.busy0
        before = self.before or {}
        groups: dict[str, float] = {}
        for pid, (group, cpu) in after.items():
            spent = cpu - before[pid][1] if pid in before else cpu
            if spent > 0:
                groups[group] = groups.get(group, 0.0) + spent
        out = {k: round(v, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}
        out["all"] = round(total, 2)
        out["unaccounted"] = round(total - sum(groups.values()), 2)
        return out
