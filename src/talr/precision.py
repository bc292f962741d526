"""The compute precision, chosen by what the hardware does fast, and the hardware facts every record carries.

``auto`` (the default of ``training.autocast``, ``talr eval --dtype`` and the sweep's evaluation) means:

* CUDA: bf16 where the device computes it natively (``torch.cuda.is_bf16_supported(including_emulation=False)``:
  Ampere and newer), float32 otherwise. fp16 is never chosen automatically (it needs loss scaling and overflows on
  the log-probabilities TALR reweights); ask for it explicitly.
* CPU: bf16 only where the CPU has native bf16 matrix instructions (x86 AVX512-BF16 or AMX, per PyTorch's own
  checks), confirmed by a tiny timed matmul, since a flag does not promise a fast kernel. Elsewhere float32: without
  native bf16 PyTorch runs bf16 matmuls in a reference (unvectorised) GEMM, ~50x slower than float32 on an AVX2-only
  CPU (measured: 512x576 @ 576x1536 takes 15 ms in float32, 788 ms in bf16). On non-x86 CPUs (ARM) the timed matmul
  alone decides.

An explicit ``bf16`` on hardware without native bf16 is kept (the user may want the numerics) but logged as a
warning that says how much slower the probe measured it and how to turn it off.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

AUTOCAST_CHOICES = ("auto", "bf16", "fp16", "none")
EVAL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# bf16 counts as fast when the probe's bf16 matmul is at most this many times slower than its float32 one: native
# bf16 runs at 0.3-1x float32's time, the reference GEMM at ~50x; 2 leaves room for timer noise on a loaded machine.
FAST_BF16_MAX_RATIO = 2.0


@dataclass(frozen=True)
class Hardware:
    """What the process computes on: the facts written beside every timing (run.json, results.json, benchmarks)."""

    device: str  # "cuda" or "cpu"
    device_name: str  # "NVIDIA H200" or the CPU model
    cpu_capability: str  # torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", "AVX512_BF16"...
    cpu_cores: int
    native_bf16: bool  # of the device that computes (the GPU when there is one)
    bf16_slowdown: float | None  # CPU probe: bf16 matmul time / float32 time (None where not measured)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        where = (f"cuda ({self.device_name})" if self.device == "cuda"
                 else f"cpu ({self.device_name}, {self.cpu_cores} cores)")
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        if self.bf16_slowdown is not None:
            bf16 += f", bf16 matmul {self.bf16_slowdown:.1f}x float32's time"
        return f"{where}; CPU capability {self.cpu_capability}; {bf16}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags_say_native_bf16() -> bool | None:
    """x86: whether PyTorch sees AVX512-BF16 or AMX; None on other architectures (no flag to read)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686") or not any(checks):
        return None
    return any(check() for check in checks if check is not None)


def _time_matmul(dtype: torch.dtype, size: tuple[int, int, int] = (128, 256, 512), repeats: int = 3) -> float:
    m, k, n = size
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    a @ b  # warm-up: kernel selection, first-touch allocation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return max(best, 1e-9)


def cpu_bf16_slowdown() -> float:
    """bf16 / float32 time of one small CPU matmul (best of 3; ~1 ms natively, ~50 ms through the reference GEMM)."""
    return _time_matmul(torch.bfloat16) / _time_matmul(torch.float32)


@functools.lru_cache(maxsize=1)
def hardware() -> Hardware:
    """The hardware facts, measured once per process."""
    capability = torch.backends.cpu.get_cpu_capability()
    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.5 has no emulation flag and reports native support only
            native = torch.cuda.is_bf16_supported()
        return Hardware("cuda", torch.cuda.get_device_name(), capability, cores, native, None)
    flags = _cpu_flags_say_native_bf16()
    slowdown = None if flags is False else cpu_bf16_slowdown()  # no probe where the flags already say no
    native = slowdown is not None and slowdown <= FAST_BF16_MAX_RATIO
    return Hardware("cpu", _cpu_model(), capability, cores, native, slowdown)


def resolve_autocast(requested: str, hw: Hardware | None = None) -> str:
    """The autocast mode to train with: ``requested`` unless it is ``auto`` (module docstring), warning when an
    explicit ``bf16`` will be slow."""
    if requested not in AUTOCAST_CHOICES:
        raise ValueError(f"training.autocast: expected one of {', '.join(AUTOCAST_CHOICES)}, got {requested!r}")
    hw = hw or hardware()
    if requested == "auto":
        return "bf16" if hw.native_bf16 else "none"
    if requested == "bf16" and not hw.native_bf16:
        _warn_once(_slow_bf16_message(hw, "training.autocast: bf16", "set training.autocast: auto (or none)"))
    return requested


def resolve_eval_dtype(requested: str, hw: Hardware | None = None) -> torch.dtype:
    """The weight dtype to evaluate in: ``bfloat16`` where bf16 is native, ``float32`` otherwise, for ``auto``."""
    if requested != "auto" and requested not in EVAL_DTYPES:
        raise ValueError(f"--dtype: expected auto, {', '.join(EVAL_DTYPES)}; got {requested!r}")
    hw = hw or hardware()
    if requested == "auto":
        return torch.bfloat16 if hw.native_bf16 else torch.float32
    if requested == "bfloat16" and not hw.native_bf16:
        _warn_once(_slow_bf16_message(hw, "--dtype bfloat16", "use --dtype auto (or float32)"))
    return EVAL_DTYPES[requested]


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    logger.warning(message)


def autocast_name(autocast: str) -> str:
    """How a resolved ``training.autocast`` reads in logs: what the matmuls compute in."""
    return {"bf16": "bf16 autocast", "fp16": "fp16 autocast", "none": "float32"}[autocast]


def _slow_bf16_message(hw: Hardware, choice: str, fix: str) -> str:
    if hw.device == "cuda":
        return f"{choice}: {hw.device_name} has no native bf16, so it is emulated and slow; {fix}"
    slower = f"~{hw.bf16_slowdown:.0f}x" if hw.bf16_slowdown else "tens of times"
    return (f"{choice}: this CPU ({hw.cpu_capability}) has no native bf16 matmul, so PyTorch falls back to a "
            f"reference GEMM: {slower} slower than float32 here; {fix}")


def log_startup(command: str, precision: str, hw: Hardware | None = None) -> None:
    """The one start-up line of train/eval/sweep/demo: device, CPU capability and the precision chosen."""
    logger.info("talr %s on %s -> precision %s", command, (hw or hardware()).describe(), precision)


def precision_record(requested: str, resolved: str, hw: Hardware | None = None) -> dict:
    """The facts run.json and results.json carry, so any timing on record says what hardware produced it."""
    return {"hardware": (hw or hardware()).as_dict(), "precision": {"requested": requested, "resolved": resolved}}
