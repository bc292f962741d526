"""Adversarial programs: each must be contained, reported as a failure, and leave the evaluator running."""

import os
import socket
import threading
import time
from pathlib import Path


from talr.evaluation.sandbox import LAUNCHER, Limits, run_python

FAST = Limits(timeout_s=3, cpu_s=3, memory_mb=512, processes=16)


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
        assert {"network", "pid", "uid"} <= set(result.isolation)


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
    grow = run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))", FAST)
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
    scratch = run_python("import os\nopen('scratch.txt', 'w').write('x')\nprint(os.environ['HOME'])", FAST)
    assert scratch.passed and scratch.stdout.strip() and not Path(scratch.stdout.strip()).exists()


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
