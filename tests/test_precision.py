"""The ``auto`` precision rule on mocked hardware, the slow-bf16 warning, and the facts records carry."""

from __future__ import annotations

import logging

import pytest
import torch

from talr import precision
from talr.precision import Hardware, resolve_autocast, resolve_eval_dtype


def _cpu(capability: str, native: bool, slowdown: float | None) -> Hardware:
    return Hardware("cpu", "Test CPU", capability, 2, native, slowdown)


AVX2 = _cpu("AVX2", False, None)
AVX512_BF16 = _cpu("AVX512", True, 0.6)
CUDA_BF16 = Hardware("cuda", "NVIDIA H100", "AVX512", 16, True, None)
CUDA_NO_BF16 = Hardware("cuda", "Tesla V100", "AVX2", 8, False, None)


@pytest.mark.parametrize(("hw", "autocast", "dtype"), [
    (AVX2, "none", torch.float32),
    (AVX512_BF16, "bf16", torch.bfloat16),
    (CUDA_BF16, "bf16", torch.bfloat16),
    (CUDA_NO_BF16, "none", torch.float32),
])
def test_auto_picks_bf16_only_where_it_is_native(hw, autocast, dtype):
    assert resolve_autocast("auto", hw) == autocast
    assert resolve_eval_dtype("auto", hw) == dtype


def test_explicit_choices_are_kept():
    for choice in ("bf16", "fp16", "none"):
        assert resolve_autocast(choice, CUDA_BF16) == choice
    assert resolve_eval_dtype("float32", CUDA_BF16) == torch.float32
    assert resolve_eval_dtype("bfloat16", AVX512_BF16) == torch.bfloat16
    with pytest.raises(ValueError, match="training.autocast"):
        resolve_autocast("fp8", AVX2)


def test_explicit_bf16_without_native_support_warns_with_the_cost_and_the_fix(caplog):
    precision._warn_once.cache_clear()
    slow = _cpu("AVX2", False, 52.0)
    with caplog.at_level(logging.WARNING, logger="talr.precision"):
        assert resolve_autocast("bf16", slow) == "bf16"
        assert resolve_eval_dtype("bfloat16", slow) == torch.bfloat16
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "~52x slower" in messages[0] and "training.autocast: auto" in messages[0]
    assert "--dtype auto" in messages[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="talr.precision"):
        resolve_autocast("bf16", slow)  # once per process, not once per call
        resolve_autocast("bf16", AVX512_BF16)  # fast: nothing to say
    assert not caplog.records


def _detect(monkeypatch, *, machine="x86_64", avx512_bf16=False, amx=False, slowdown=1.0, cuda=None):
    """Run hardware() with the CPU flags, the timed probe and CUDA mocked."""
    precision.hardware.cache_clear()
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    probes = []
    monkeypatch.setattr(precision, "cpu_bf16_slowdown", lambda: probes.append(1) or slowdown)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda is not None)
    if cuda is not None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: cuda[0])
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: cuda[1])
    try:
        return precision.hardware(), len(probes)
    finally:
        precision.hardware.cache_clear()


def test_detection_avx2_only_needs_no_probe(monkeypatch):
    hw, probes = _detect(monkeypatch)
    assert (hw.device, hw.native_bf16, hw.bf16_slowdown, probes) == ("cpu", False, None, 0)


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx"])
def test_detection_native_bf16_flag_is_confirmed_by_the_probe(monkeypatch, flag):
    hw, probes = _detect(monkeypatch, **{flag: True}, slowdown=0.5)
    assert hw.native_bf16 and probes == 1
    hw, _ = _detect(monkeypatch, **{flag: True}, slowdown=40.0)  # a flag whose kernel is slow anyway
    assert not hw.native_bf16 and hw.bf16_slowdown == 40.0


def test_detection_on_arm_uses_the_probe_alone(monkeypatch):
    assert _detect(monkeypatch, machine="aarch64", slowdown=0.8)[0].native_bf16
    assert not _detect(monkeypatch, machine="aarch64", slowdown=30.0)[0].native_bf16


@pytest.mark.parametrize(("supported", "autocast"), [(True, "bf16"), (False, "none")])
def test_detection_cuda(monkeypatch, supported, autocast):
    hw, probes = _detect(monkeypatch, cuda=("NVIDIA Test", supported))
    assert (hw.device, hw.device_name, hw.native_bf16, probes) == ("cuda", "NVIDIA Test", supported, 0)
    assert resolve_autocast("auto", hw) == autocast


def test_real_probe_runs_and_describes_the_machine():
    slowdown = precision.cpu_bf16_slowdown()
    assert slowdown > 0
    hw = precision.hardware()
    assert hw.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert hw.cpu_capability in hw.describe()
    record = precision.precision_record("auto", "none", hw)
    assert record["hardware"]["cpu_capability"] == hw.cpu_capability
    assert record["precision"] == {"requested": "auto", "resolved": "none"}
