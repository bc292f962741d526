"""Adversarial programs: each must be contained, reported as a failure, and leave the evaluator running.

CI runs these as root, where every layer of ``LAYERS`` is in force. On a machine that lacks one (not root, no user
namespaces) the containment tests run with unsandboxed runs allowed and the layer-specific ones are skipped.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from talr.evaluation import sandbox
from talr.evaluation.registry import get_task
from talr.evaluation.sandbox import ALLOW_ENV, LAUNCHER, LAYERS, Limits, SandboxUnavailable, run_python
from talr.evaluation.tasks.humaneval import LIMITS, program
from talr.paths import data_dir

FAST = Limits(timeout_s=3, cpu_s=3, memory_mb=512, processes=16)
FULLY_SANDBOXED = set(LAYERS) <= set(sandbox._probe_layers())
needs_all_layers = pytest.mark.skipif(not FULLY_SANDBOXED, reason="this machine cannot build every sandbox layer")


@pytest.fixture(autouse=True)
def _allow_where_a_layer_is_missing(monkeypatch):
    if not FULLY_SANDBOXED:
        monkeypatch.setenv(ALLOW_ENV, "1")


def _sandbox_processes() -> list[int]:
    """Live processes started from the sandbox launcher (the launcher and everything it forked)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(LAUNCHER).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _assert_no_leftovers():
    deadline = time.monotonic() + 5
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes() == []


def test_good_and_bad_programs():
    ok = run_python("import math, collections, re\nassert math.gcd(12, 18) == 6\nprint('hi')", FAST)
    assert ok.passed and ok.stdout == "hi\n" and ok.returncode == 0
    bad = run_python("def f(x):\n    return x + 1\nassert f(1) == 3", FAST)
    assert bad.status == "failed" and "AssertionError" in bad.stderr
    syntax = run_python("def broken(:\n", FAST)
    assert syntax.status == "failed" and "SyntaxError" in syntax.stderr


def test_sandbox_reports_its_isolation():
    result = run_python("pass", FAST)
    if os.geteuid() == 0:
        assert result.isolation == list(LAYERS) and result.missing == []


def test_infinite_loop_times_out():
    result = run_python("while True:\n    pass", Limits(timeout_s=1.5, cpu_s=10))
    assert result.status == "timeout" and not result.passed
    assert result.seconds < 5
    _assert_no_leftovers()


def test_cpu_limit_kills_a_spinning_program_before_the_wall_clock():
    result = run_python("while True:\n    pass", Limits(timeout_s=20, cpu_s=1))
    assert result.status == "failed" and result.seconds < 10


def test_fork_bomb_is_capped_and_cleaned_up():
    # First a bounded probe (safe even with no cap): the process limit must stop it well short of 60 forks.
    probe = run_python(
        "import posix, time\nn = 0\ntry:\n    for _ in range(60):\n        if posix.fork() == 0:\n"
        "            time.sleep(30)\n            posix._exit(0)\n        n += 1\nfinally:\n    print(n)",
        FAST,
    )
    assert probe.stdout.strip() and int(probe.stdout.strip()) < FAST.processes
    _assert_no_leftovers()  # the sleeping children died with the program
    # Only now the real thing, through the guard's back door (posix.fork) and through os.fork.
    bomb = run_python("import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass", FAST)
    assert not bomb.passed
    _assert_no_leftovers()
    naive = run_python("import os\nwhile True:\n    os.fork()", FAST)
    assert naive.status == "failed" and "NoneType" in naive.stderr  # os.fork is disabled by the guard
    assert run_python("print(1)", FAST).passed


def test_memory_hog_is_stopped():
    big = run_python("x = bytearray(8 * 2**30)", FAST)
    assert big.status == "failed" and "MemoryError" in big.stderr
    # zero-filling 512 MiB takes seconds on a loaded 2-core machine: the wall clock must not be what stops it
    grow = run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))",
                      Limits(timeout_s=30, cpu_s=20, memory_mb=512))
    assert grow.status == "failed"


def test_output_flood_is_capped():
    result = run_python("while True:\n    print('x' * 1000)", Limits(timeout_s=5, file_mb=1))
    assert result.status == "failed"
    assert len(result.stdout) < 10_000


def test_files_outside_the_working_directory_survive(tmp_path):
    victim_dir = tmp_path / "precious"
    victim_dir.mkdir()
    victim = victim_dir / "data.txt"
    victim.write_text("keep me")
    tmp_path.chmod(0o755)
    victim_dir.chmod(0o755)  # readable by anyone, writable by its owner only
    attacks = [
        f"import os\nos.remove({str(victim)!r})",
        f"import posix\nposix.unlink({str(victim)!r})",
        f"import shutil\nshutil.rmtree({str(victim_dir)!r})",
        f"open({str(victim)!r}, 'w').write('overwritten')",
        f"import posix\nposix.rename({str(victim)!r}, 'stolen.txt')",
    ]
    for source in attacks:
        assert run_python(source, FAST).status == "failed", source
    assert victim.read_text() == "keep me"
    # The program's own scratch directory is writable and thrown away afterwards.
    scratch = run_python("import os\nopen('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())", FAST)
    assert scratch.passed and scratch.stdout == "x\n"


def test_no_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(4)
    port = server.getsockname()[1]
    connections = []

    def accept():
        try:
            connections.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    result = run_python(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)", FAST)
    thread.join()
    server.close()
    assert result.status == "failed"
    assert connections == []


def test_killing_the_evaluator_or_everything_fails():
    me = os.getpid()
    guarded = run_python(f"import os, signal\nos.kill({me}, signal.SIGKILL)", FAST)
    assert guarded.status == "failed" and "NoneType" in guarded.stderr
    direct = run_python(f"import posix, signal\nposix.kill({me}, signal.SIGKILL)", FAST)
    assert direct.status == "failed"
    everyone = run_python("import posix, signal\nposix.kill(-1, signal.SIGKILL)\nprint('survived')", FAST)
    assert not everyone.passed or everyone.stdout == "survived\n"
    # In its PID namespace the program's parent is invisible (getppid() == 0, so this signals its own process group,
    # where it may only signal itself, and PID 1 ignores SIGKILL sent from inside): nothing outside is hit.
    parent = run_python("import posix, signal\nposix.kill(posix.getppid(), signal.SIGKILL)\nprint('survived')", FAST)
    assert parent.status == "failed" or parent.stdout == "survived\n"
    # Still here, and the sandbox still works.
    assert os.getpid() == me and run_python("print('ok')", FAST).passed


# A HumanEval-shaped program (prompt + completion + tests + check(entry_point)), as tasks.humaneval.program builds it.
PROMPT = 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n'
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def _program(completion: str) -> str:
    return f"{PROMPT}{completion}\n\n{TESTS}\n\ncheck(add)\n"


FORGED_PASSES = {
    "sys.exit in the function": "    import sys\n    sys.exit(0)\n",
    "SystemExit in the function": "    raise SystemExit(0)\n",
    "os._exit in the function": "    import os\n    os._exit(0)\n",
    "posix._exit in the function": "    import posix\n    posix._exit(0)\n",
    "os._exit at top level": "    return 0\n\nimport os\nos._exit(0)\n",
    "sys.exit at top level": "    return 0\n\nimport sys\nsys.exit()\n",
    "posix._exit from a thread while the tests run": (
        "    import posix, threading, time\n    threading.Thread(target=posix._exit, args=(0,)).start()\n"
        "    time.sleep(1)\n    return 0\n"
    ),
    "KeyboardInterrupt in the function": "    raise KeyboardInterrupt\n",
    "SIGKILL to itself": "    import posix, signal\n    posix.kill(posix.getpid(), signal.SIGKILL)\n",
    "a pass printed on both streams": "    import sys\n    print('passed')\n    print('passed', file=sys.stderr)\n"
                                      "    sys.exit(0)\n",
    "atexit handler exiting 0": "    import atexit, posix\n    atexit.register(posix._exit, 0)\n    return 0\n",
    "the runner's refusal status": "    import posix\n    posix._exit(125)\n",  # failed, not a refusal
}


def test_setuid_root_and_sleeping_fail():
    for source in ("import posix\nposix.setuid(0)", "import posix\nposix.setgid(0)", "import posix\nposix.setgroups([0])"):
        assert run_python(source, FAST).status == "failed", source
    asleep = run_python("import time\ntime.sleep(60)", Limits(timeout_s=1.5))
    assert asleep.status == "timeout" and asleep.seconds < 5
    _assert_no_leftovers()


def test_the_honest_completion_passes():
    assert run_python(_program("    return a + b\n"), FAST).passed


@pytest.mark.parametrize("completion", list(FORGED_PASSES.values()), ids=list(FORGED_PASSES))
def test_exiting_before_the_tests_finish_is_a_failure(completion):
    result = run_python(_program(completion), FAST)
    assert result.status == "failed", (result.stdout, result.stderr)


@needs_all_layers
def test_a_root_only_file_cannot_be_read(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a root-only file")
    secret = Path("/root") / f".talr-sandbox-secret-{uuid.uuid4().hex}"
    secret.write_text("TOP-SECRET-TOKEN")
    secret.chmod(0o600)
    beside = tmp_path / "secret.txt"  # also root's, in a folder anyone may list
    beside.write_text("TOP-SECRET-TOKEN")
    beside.chmod(0o600)
    tmp_path.chmod(0o755)
    try:
        for path in (secret, beside):
            for source in (f"print(open({str(path)!r}).read())",
                           f"import posix\nposix.system('cat {path}')\nprint(open({str(path)!r}).read())"):
                result = run_python(source, FAST)
                assert result.status == "failed", source
                assert "TOP-SECRET-TOKEN" not in result.stdout + result.stderr
    finally:
        secret.unlink()


@needs_all_layers
def test_writes_outside_its_folder_do_not_reach_the_machine():
    names = [f"/tmp/talr-sandbox-escape-{uuid.uuid4().hex}" for _ in range(3)]
    shm = f"/dev/shm/talr-sandbox-escape-{uuid.uuid4().hex}"
    source = (
        f"open({names[0]!r}, 'w').write('x')\n"
        f"import posix\nposix.system('touch {names[1]}')\n"
        f"posix.system('echo x > {names[2]}')\n"
        f"open({shm!r}, 'w').write('x')\n"
        f"import os\nassert os.path.exists({names[0]!r}) and os.path.exists({names[1]!r})\n"
    )
    result = run_python(source, FAST)
    assert result.passed, result.stderr  # the jail's own /tmp and /dev/shm take the writes...
    for name in (*names, shm):
        assert not Path(name).exists(), name  # ...and none reach the machine's


def _shared_memory_segments() -> set[str]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {line.split()[1] for line in lines}  # shmid


@needs_all_layers
def test_shared_memory_does_not_outlive_the_run():
    before = _shared_memory_segments()
    source = "import ctypes\nshmid = ctypes.CDLL(None).shmget(0, 1 << 20, 0o1666)\nassert shmid >= 0\nprint(shmid)"
    result = run_python(source, FAST)  # IPC_PRIVATE, 1 MiB, IPC_CREAT | 0666, never removed
    assert result.passed, result.stderr
    assert _shared_memory_segments() <= before


@needs_all_layers
def test_the_jail_holds_only_what_python_needs():
    # An open folder outside the jail would let posix.fchdir walk out of it: the program holds none.
    source = (
        "import json, os, posix, stat\nfolders = []\nfor fd in range(1024):\n    try:\n"
        "        folders += [fd] if stat.S_ISDIR(posix.fstat(fd).st_mode) else []\n    except OSError:\n        pass\n"
        "print(json.dumps([os.listdir(d) for d in ('/', '/proc', '/tmp')] + [folders]))"
    )
    result = run_python(source, FAST)
    assert result.passed, result.stderr
    top, proc, tmp, open_folders = json.loads(result.stdout)
    assert open_folders == []
    python_top = os.path.realpath(sys.base_prefix).split("/")[1]  # e.g. "root" for a Python under /root
    assert set(top) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "tmp", "proc",
                        "sandbox", python_top}
    assert proc == [] and tmp == []  # no /proc, an empty private /tmp


def test_a_missing_layer_refuses_to_run_the_program(monkeypatch):
    """The launcher checks the layers it built against the required list before the program starts."""
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setattr(sandbox, "LAYERS", {**LAYERS, "imaginary": "a layer no kernel builds"})
    with pytest.raises(SandboxUnavailable, match="imaginary.*--allow-unsandboxed"):
        run_python("print('the program ran')", FAST)
    allowed = run_python("print('the program ran')", FAST, allow_unsandboxed=True)
    assert allowed.passed and allowed.stdout == "the program ran\n" and "imaginary" in allowed.missing
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert run_python("pass", FAST).passed


def test_the_probe_refuses_unless_allowed(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setattr(sandbox, "_probe_layers", lambda: ("network", "pid", "rlimits"))
    with pytest.raises(SandboxUnavailable, match="ipc, filesystem, user, capabilities"):
        sandbox.sandbox_layers()
    assert sandbox.sandbox_layers(allow_unsandboxed=True) == ["network", "pid", "rlimits"]
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert sandbox.sandbox_layers() == ["network", "pid", "rlimits"]


needs_humaneval = pytest.mark.skipif(not (data_dir() / "humaneval" / "HumanEval.jsonl.gz").exists(),
                                     reason="HumanEval data not present")


@needs_humaneval
def test_humaneval_scores_an_exit_before_the_tests_as_a_failure():
    task = get_task("humaneval")
    doc = next(d for d in task.load(data_dir(), None)[0] if d["id"] == "HumanEval/0")
    for completion in ("    import sys\n    sys.exit(0)\n", "    return True\n\nimport os\nos._exit(0)\n"):
        scored = task.score(doc, completion)
        assert scored.scores["pass@1,create_test"] == 0.0 and scored.details["status"] == "failed"
    assert task.score(doc, doc["canonical_solution"]).scores["pass@1,create_test"] == 1.0


@needs_humaneval
def test_every_canonical_humaneval_solution_passes():
    """All 164, four programs at a time (each waits mostly on process start-up), as the task scores them."""
    task = get_task("humaneval")
    docs, total = task.load(data_dir(), None)
    assert total == len(docs) == 164

    def status(doc):
        return run_python(program(doc, doc["canonical_solution"]), LIMITS).status

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = dict(zip((d["id"] for d in docs), pool.map(status, docs)))
    assert {k: v for k, v in statuses.items() if v != "passed"} == {}
    layers = task.config()["sandbox"]
    assert layers["layers"] == list(sandbox._probe_layers())
    assert layers["missing"] == [x for x in LAYERS if x not in layers["layers"]]


def test_talr_eval_refuses_humaneval_without_every_layer_unless_allowed(monkeypatch, capsys):
    import argparse

    import talr.models
    from talr.evaluation import cli

    class ModelLoaded(Exception):
        pass

    def load_model(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setattr(sandbox, "_probe_layers", lambda: ("pid", "rlimits"))
    monkeypatch.setattr(talr.models, "load_model", load_model)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--model", "smollm2-135m-instruct", "--tasks", "gsm8k,humaneval"]
    assert cli.run(parser.parse_args(argv)) == 2  # before the model loads
    assert "lacks layer(s) network, ipc, filesystem, user, capabilities" in capsys.readouterr().err
    with pytest.raises(ModelLoaded):  # no task runs code: nothing to check
        cli.run(parser.parse_args(["--model", "m", "--tasks", "gsm8k"]))
    with pytest.raises(ModelLoaded):
        cli.run(parser.parse_args([*argv, "--allow-unsandboxed"]))


@needs_all_layers
def test_no_capability_is_left():
    source = (
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        "bounding = [cap for cap in range(64) if libc.prctl(23, cap, 0, 0, 0) == 1]\n"  # PR_CAPBSET_READ
        "header = (ctypes.c_uint32 * 2)(0x20080522, 0)\ndata = (ctypes.c_uint32 * 6)()\n"
        "assert libc.capget(header, data) == 0\n"
        "print(bounding, list(data), libc.prctl(39, 0, 0, 0, 0))"  # PR_GET_NO_NEW_PRIVS
    )
    result = run_python(source, FAST)
    assert result.passed, result.stderr
    assert result.stdout == "[] [0, 0, 0, 0, 0, 0] 1\n"


def _readable_by_anyone(path: Path) -> bool:
    path = path.resolve()
    folders_ok = all(os.stat(p).st_mode & 0o001 for p in path.parents)
    return folders_ok and bool(os.stat(path).st_mode & 0o004)


SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEM_PYTHON.exists() or not Path("/usr/bin/setpriv").exists()
    or not _readable_by_anyone(LAUNCHER) or not _readable_by_anyone(Path(sandbox.__file__)),
    reason="needs root, setpriv, a system Python and a checkout that nobody can read",
)
def test_an_unprivileged_evaluator_gets_every_layer_or_a_refusal():
    """The non-root path, for real: the evaluator itself runs as nobody (user namespaces, where the kernel allows)."""
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('sbx', {str(Path(sandbox.__file__))!r})\n"
        "sbx = importlib.util.module_from_spec(spec); sys.modules['sbx'] = sbx; spec.loader.exec_module(sbx)\n"
        "probe = sbx.run_python('import os; print(os.getuid())', allow_unsandboxed=True)\n"
        "out = {'layers': probe.isolation, 'uid': probe.stdout.strip()}\n"
        "try:\n"
        "    exit_forgery = sbx.run_python('import os; os._exit(0)')\n"
        "    escape = sbx.run_python(\"open('/tmp/%s', 'w').write('x')\" % sys.argv[1])\n"
        "    out.update(exit_forgery=exit_forgery.status, escape=escape.status)\n"
        "except sbx.SandboxUnavailable as e:\n"
        "    out['refused'] = e.missing\n"
        "print(json.dumps(out))\n"
    )
    marker = f"talr-sandbox-nobody-{uuid.uuid4().hex}"
    done = subprocess.run(
        ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(SYSTEM_PYTHON), "-I", "-c",
         script, marker], capture_output=True, text=True, timeout=120, cwd="/",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    if out["layers"] == list(LAYERS):
        assert out["uid"] == "65534" and out["exit_forgery"] == "failed" and out["escape"] == "passed"
        assert not Path("/tmp", marker).exists()
    else:  # this kernel refuses user namespaces: the program must not have run
        assert out["refused"] == [layer for layer in LAYERS if layer not in out["layers"]] != []
