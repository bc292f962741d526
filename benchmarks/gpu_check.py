"""talr on a GPU, measured: one prepared command that runs every GPU check and writes a summary with its targets.

    python benchmarks/gpu_check.py --out DIR [--model-dir DIR] [--parts tests,train_step,loss_head,generation]
    python benchmarks/gpu_check.py --out DIR --tiny     # seconds, on CPU: what the test suite runs so this cannot rot

Parts (each guarded: one that fails is reported and the others still run; everything lands under ``--out``):

* ``tests``: ``pytest -m cuda`` (the tests that need CUDA: fused head vs reference in bf16 and fp32, step-exact
  weights, the ``auto`` precision rule, no host syncs from TALR's weights and statistics, a short real training run).
* ``train_step``: whole optimizer steps of ``TalrTrainer`` (AdamW, autocast ``auto`` = bf16 on the GPU), SFT vs TALR
  with the fused head, one micro-batch and 2-way gradient accumulation (step-exact TALR), on random-weight models of
  SmolLM2-135M's shape and of a ~1B Llama shape (no download), 2 sequences of 2,048 and 8,192 tokens per step, half
  of each supervised. Median step time (synchronised wall clock) and peak GPU memory.
* ``loss_head``: the LM-head loss alone (forward + backward, bf16 autocast) at vocabularies 49,152 (hidden 576) and
  151,936 (hidden 896), 4k-32k tokens: transformers' default loss, a chunked cross-entropy, TALR's fused head (softmax
  kept when it fits, else recomputed) and TALR always recomputing. Median time and peak memory.
* ``generation``: talr's batched greedy ``generate`` vs ``model.generate`` one prompt at a time, 16 prompts, 256 new
  tokens, bf16 and float32, on a random-weight model with the real tokenizer of ``--model-dir`` (outputs compared).

``--model-dir``: a folder with a ``config.json`` and tokenizer files (weights are not read): default the embedded
model's converted folder when it exists, else a tiny random model (tiny mode). Files written: ``summary.md`` (device,
versions, every ratio beside its target), ``results.json``, ``cuda_tests.txt``, ``log.txt``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

PARTS = ("tests", "train_step", "loss_head", "generation")
# name -> (method, per-device batch, accumulation): 2 sequences per optimizer step in every setting
STEP_SETTINGS = {
    "sft fused": ("sft", 2, 1),
    "talr fused": ("talr", 2, 1),
    "sft fused, 1x2": ("sft", 1, 2),
    "talr fused, 1x2, step-exact": ("talr", 1, 2),
}
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0,
                    max_position_embeddings=8192)
# Llama-3.2-1B's body with SmolLM2's vocabulary: 1.07B parameters
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=49152, tie_word_embeddings=True, rope_theta=500000.0,
                max_position_embeddings=8192)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=512, tie_word_embeddings=True, max_position_embeddings=512)
TARGETS = {
    "train_step": "TALR / SFT step time <= 1.02 (same head and split)",
    "loss_head_time": "talr_fused / ce_chunked time <= 1.05",
    "loss_head_memory": "talr_fused peak <= 1/4 of hf_default",
    "generation": "batched / one-at-a-time speed-up >= 8x",
}


class Log:
    def __init__(self, out: Path):
        self.path = out / "log.txt"

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _clock() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _reset_peak() -> int:
    """Start a peak-memory measurement; returns the bytes allocated now (0 on CPU, where peaks are not tracked)."""
    gc.collect()
    if not torch.cuda.is_available():
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _peak_mib(base: int) -> float | None:
    return (torch.cuda.max_memory_allocated() - base) / 2**20 if torch.cuda.is_available() else None


def _versions() -> dict:
    import transformers

    import talr
    from talr.precision import hardware

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "talr": talr.__version__, "hardware": hardware().as_dict()}


# -- tests -------------------------------------------------------------------------------------------------------

def run_tests(out: Path, log: Log) -> dict:
    # every CUDA test lives in tests/test_cuda.py, so collection imports nothing a bare GPU machine may lack
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-s", "-m", "cuda", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "test_cuda.py")]
    log("tests: " + " ".join(cmd))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    (out / "cuda_tests.txt").write_text(done.stdout[-200_000:] + "\n" + done.stderr[-50_000:])
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"returncode": done.returncode, "summary": last}


# -- whole training step ---------------------------------------------------------------------------------------

def _features(vocab: int, seq: int, n: int, seed: int = 0) -> list[dict]:
    """``n`` random sequences of ``seq`` tokens whose second half is supervised (a prompt, then its answer)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (seq,), generator=gen).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * (seq // 2) + ids[seq // 2:]})
    return rows


def step_time(shape: dict, seq: int, setting: str, steps: int, workdir: Path) -> dict:
    """Median time of ``steps`` optimizer steps (after one untimed) and the peak memory of the whole run."""
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

    from talr.config import config_from_dict
    from talr.data.formats import CausalLMCollator
    from talr.trainer import TalrTrainer, training_arguments

    method, batch, accumulation = STEP_SETTINGS[setting]
    config = config_from_dict({
        "output_dir": str(workdir / "run"), "method": method, "data": {"train": "unused.jsonl", "max_length": seq},
        "training": {"max_steps": steps + 1, "per_device_batch_size": batch, "gradient_accumulation_steps":
                     accumulation, "autocast": "auto", "logging_steps": 10_000, "learning_rate": 1e-5,
                     "warmup_ratio": 0.0, "save_model": False},
        "probes": {"enabled": False},
    })
    torch.manual_seed(0)
    with torch.device(_device()):  # random init on the GPU: seconds for 1B parameters instead of a minute on CPU
        model = LlamaForCausalLM(LlamaConfig(**shape, pad_token_id=0, bos_token_id=1, eos_token_id=2))
    features = _features(shape["vocab_size"], seq, 2 * (steps + 1))
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            ends.append(_clock())

    args = training_arguments(config, workdir / "run")
    args.disable_tqdm = True
    trainer = TalrTrainer(model=model, args=args, train_dataset=features, data_collator=CausalLMCollator(0),
                          run_config=config, callbacks=[StepClock()])
    base = _reset_peak()
    trainer.train()
    times = [b - a for a, b in zip(ends, ends[1:])]
    result = {"step_s": statistics.median(times), "step_times": times, "peak_mib": _peak_mib(base),
              "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "fused": trainer.head.fused,
              "autocast": "bf16" if args.bf16 else "fp16" if args.fp16 else "none"}
    del trainer, model
    _reset_peak()
    return result


def run_train_step(tiny: bool, steps: int, log: Log) -> dict:
    shapes = {"tiny": TINY} if tiny else {"smollm2-135m shape": SMOLLM2_135M, "llama-1b shape": LLAMA_1B}
    seqs = (32,) if tiny else (2048, 8192)
    results = {}
    with tempfile.TemporaryDirectory(prefix="talr-gpu-step-") as tmp:
        for shape_name, shape in shapes.items():
            for seq in seqs:
                for setting in STEP_SETTINGS:
                    key = f"{shape_name} | {seq} | {setting}"
                    try:
                        results[key] = step_time(shape, seq, setting, steps, Path(tmp))
                        log(f"train_step {key}: {results[key]['step_s'] * 1000:.1f} ms, "
                            f"peak {results[key]['peak_mib']} MiB")
                    except Exception as err:  # noqa: BLE001 - one failed setting must not lose the others
                        results[key] = {"error": f"{type(err).__name__}: {err}"}
                        log(f"train_step {key}: FAILED {results[key]['error']}")
                        _reset_peak()
    return results


# -- loss head ---------------------------------------------------------------------------------------------------

HEAD_PATHS = ("hf_default", "ce_chunked", "talr_fused", "talr_recompute")


def head_time(vocab: int, hidden: int, tokens: int, path: str, repeats: int) -> dict:
    from loss_head import _loss_fn

    device = _device()
    gen = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(1, tokens, hidden, generator=gen, device=device).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=gen, device=device) * hidden**-0.5).requires_grad_()
    labels = torch.randint(0, vocab, (1, tokens), generator=gen, device=device)
    fn = _loss_fn(path, h, w, labels, vocab)

    def step():
        h.grad = w.grad = None
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = fn()
        loss.backward()

    base = _reset_peak()
    step()  # the first forward + backward: its peak is the path's memory
    peak = _peak_mib(base)
    times = []
    for _ in range(repeats):
        start = _clock()
        step()
        times.append(_clock() - start)
    del h, w, labels, fn
    _reset_peak()
    return {"time_s": statistics.median(times), "peak_mib": peak}


def run_loss_head(tiny: bool, repeats: int, log: Log) -> dict:
    sizes = [(1000, 32, 64)] if tiny else [
        (vocab, hidden, tokens) for vocab, hidden in ((49152, 576), (151936, 896)) for tokens in (4096, 16384, 32768)]
    results = {}
    for vocab, hidden, tokens in sizes:
        for path in HEAD_PATHS:
            key = f"{vocab} | {tokens} | {path}"
            try:
                results[key] = head_time(vocab, hidden, tokens, path, repeats)
                log(f"loss_head {key}: {results[key]['time_s'] * 1000:.2f} ms, peak {results[key]['peak_mib']} MiB")
            except Exception as err:  # noqa: BLE001 - an out-of-memory default path is itself a result
                results[key] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
                log(f"loss_head {key}: FAILED {results[key]['error']}")
                _reset_peak()
    return results


# -- generation --------------------------------------------------------------------------------------------------

def run_generation(model_dir: Path, tiny: bool, log: Log) -> dict:
    from generation import compare
    from transformers import AutoConfig, AutoModelForCausalLM

    from talr.demo.general_probes import general_prompt_rows
    from talr.evaluation.generation import chat_prompt
    from talr.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    prompts = [chat_prompt(tokenizer, [{"role": "user", "content": row["prompt"]}])
               for row in general_prompt_rows()[: 2 if tiny else 16]]
    budget = 4 if tiny else 256
    results = {}
    for dtype in (torch.float32,) if tiny else (torch.bfloat16, torch.float32):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=dtype)
        model.to(_device()).eval()
        rows = compare(model, tokenizer, prompts, budget, batch_size=len(prompts))
        name = str(dtype).removeprefix("torch.")
        results[name] = {"differ": rows.pop("differ"), "prompts": len(prompts), "max_new_tokens": budget,
                         "rows": {k: {m: v for m, v in r.items() if m != "outputs"} for k, r in rows.items()}}
        single, batched = results[name]["rows"].values()
        log(f"generation {name}: one at a time {single['total_s']:.2f} s, batched {batched['total_s']:.2f} s")
        del model
        _reset_peak()
    return results


# -- summary -----------------------------------------------------------------------------------------------------

def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value, spec=".3f") -> str:
    return "-" if value is None else format(value, spec)


def _verdict(value: float | None, limit: float, below: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= limit if below else value >= limit) else "NOT met"


def summary(results: dict) -> str:
    v = results["versions"]
    hw = v["hardware"]
    lines = [f"# talr GPU check: {hw['device_name']}", "",
             f"Device {hw['device']} ({hw['device_name']}), native bf16 {hw['native_bf16']}; host CPU capability "
             f"{hw['cpu_capability']}, {hw['cpu_cores']} cores. Python {v['python']}, torch {v['torch']} (CUDA "
             f"{v['cuda']}), transformers {v['transformers']}, talr {v['talr']}. Wall time of the check: "
             f"{results['wall_s']:.0f} s. Command: `{results['command']}`.", ""]
    if "tests" in results:
        t = results["tests"]
        lines += ["## CUDA tests", "", f"`pytest -m cuda`: {t.get('summary', t.get('error'))} "
                  f"(exit {t.get('returncode')}; full output in cuda_tests.txt)", ""]
    if "train_step" in results:
        lines += ["## Whole training step (TalrTrainer, AdamW, autocast auto)", "", f"Target: {TARGETS['train_step']}.",
                  "", "| shape | tokens per sequence | setting | step ms | TALR / SFT | peak MiB | verdict |",
                  "|---|---:|---|---:|---:|---:|---|"]
        steps = results["train_step"]
        for key, r in steps.items():
            shape, seq, setting = key.split(" | ")
            if "error" in r:
                lines.append(f"| {shape} | {seq} | {setting} | {r['error'][:80]} | | | |")
                continue
            ratio = verdict = ""
            if setting.startswith("talr"):
                base = steps.get(f"{shape} | {seq} | {setting.replace('talr', 'sft').replace(', step-exact', '')}")
                value = _ratio(r["step_s"], base.get("step_s") if base else None)
                ratio, verdict = _fmt(value), _verdict(value, 1.02)
            lines.append(f"| {shape} | {seq} | {setting} | {r['step_s'] * 1000:.1f} | {ratio} | "
                         f"{_fmt(r['peak_mib'], '.0f')} | {verdict} |")
        lines.append("")
    if "loss_head" in results:
        lines += ["## Loss head alone (forward + backward, bf16 autocast)", "",
                  f"Targets: {TARGETS['loss_head_time']}; {TARGETS['loss_head_memory']}.", "",
                  "| vocab | tokens | path | ms | time / ce_chunked | peak MiB | peak / hf_default |",
                  "|---:|---:|---|---:|---:|---:|---:|"]
        head = results["loss_head"]
        for key, r in head.items():
            vocab, tokens, path = key.split(" | ")
            if "error" in r:
                lines.append(f"| {vocab} | {tokens} | {path} | {r['error'][:80]} | | | |")
                continue
            ce = head.get(f"{vocab} | {tokens} | ce_chunked", {})
            default = head.get(f"{vocab} | {tokens} | hf_default", {})
            lines.append(f"| {vocab} | {tokens} | {path} | {r['time_s'] * 1000:.2f} | "
                         f"{_fmt(_ratio(r['time_s'], ce.get('time_s')))} | {_fmt(r['peak_mib'], '.0f')} | "
                         f"{_fmt(_ratio(r['peak_mib'], default.get('peak_mib')))} |")
        lines += ["", "| vocab | tokens | talr_fused / ce_chunked time | verdict | talr_fused / hf_default peak | "
                  "verdict |", "|---:|---:|---:|---|---:|---|"]
        for key in head:
            vocab, tokens, path = key.split(" | ")
            if path != "talr_fused" or "error" in head[key]:
                continue
            t = _ratio(head[key]["time_s"], head.get(f"{vocab} | {tokens} | ce_chunked", {}).get("time_s"))
            m = _ratio(head[key]["peak_mib"], head.get(f"{vocab} | {tokens} | hf_default", {}).get("peak_mib"))
            lines.append(f"| {vocab} | {tokens} | {_fmt(t)} | {_verdict(t, 1.05)} | {_fmt(m)} | "
                         f"{_verdict(m, 0.25)} |")
        lines.append("")
    if "generation" in results:
        lines += ["## Generation: batched vs one prompt at a time", "", f"Target: {TARGETS['generation']}.", ""]
        for dtype, r in results["generation"].items():
            if "rows" not in r:
                lines.append(f"{dtype}: {r}")
                continue
            single, batched = r["rows"].values()
            speedup = _ratio(single["total_s"], batched["total_s"])
            lines += [f"{dtype} weights, {r['prompts']} prompts, {r['max_new_tokens']} new tokens: one at a time "
                      f"{single['total_s']:.2f} s, batched {batched['total_s']:.2f} s = **{_fmt(speedup, '.1f')}x** "
                      f"({_verdict(speedup, 8.0, below=False)}); outputs differing: {r['differ']} of {r['prompts']}.",
                      ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for summary.md, results.json, cuda_tests.txt, log.txt")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and few steps (runs on CPU in seconds)")
    parser.add_argument("--model-dir", default=None, help="config.json + tokenizer folder for the generation part")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 8, tiny 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed loss-head rounds (default 5, tiny 2)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)} (known: {', '.join(PARTS)})")
    steps = args.steps or (1 if args.tiny else 8)
    repeats = args.repeats or (2 if args.tiny else 5)
    started = time.time()
    results: dict = {"command": " ".join(["python", "benchmarks/gpu_check.py", *(argv or sys.argv[1:])]),
                     "versions": _versions()}
    log(f"gpu_check on {results['versions']['hardware']['device_name']}: parts {', '.join(parts)}")

    def model_dir() -> Path:
        if args.model_dir:
            return Path(args.model_dir)
        from talr.models import EMBEDDED_MODELS
        from talr.paths import cache_dir

        converted = cache_dir() / "models" / next(iter(EMBEDDED_MODELS))
        if (converted / "config.json").is_file() and not args.tiny:
            return converted
        from talr.testing import make_tiny_model

        return make_tiny_model(Path(tempfile.mkdtemp(prefix="talr-gpu-tiny-")))

    runners = {
        "tests": lambda: run_tests(out, log),
        "train_step": lambda: run_train_step(args.tiny, steps, log),
        "loss_head": lambda: run_loss_head(args.tiny, repeats, log),
        "generation": lambda: run_generation(model_dir(), args.tiny, log),
    }
    for part in parts:
        t0 = time.time()
        try:
            results[part] = runners[part]()
        except Exception as err:  # noqa: BLE001 - keep every other part's results
            results[part] = {"error": f"{type(err).__name__}: {err}"}
            log(f"{part}: FAILED\n{traceback.format_exc()}")
        log(f"{part}: done in {time.time() - t0:.0f} s")
        results["wall_s"] = time.time() - started
        # written after every part, so a check cut short still leaves what it measured
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (out / "summary.md").write_text(summary(results) + "\n")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
