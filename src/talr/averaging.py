"""Post-hoc model averaging. WiSE-FT (Wortsman et al. 2022) interpolates the fine-tuned weights towards the base::

    theta_alpha = (1 - alpha) * theta_base + alpha * theta_finetuned,   alpha in [0, 1]

* Full fine-tuning: the two checkpoints are streamed tensor by tensor from their safetensors files (``safe_open``),
  so memory stays at one output shard plus a few tensors, never two extra full models. Each tensor is interpolated in
  float32 with ``torch.lerp`` (exact at alpha = 0 and 1) and stored in the fine-tuned side's dtype.
* LoRA: ``theta_base + alpha * delta`` with ``delta`` the adapter's update, i.e. the adapter's scale multiplied by
  alpha before merging (PEFT's ``rescale_adapter_scale``, documented there as equivalent to WiSE-FT), which equals
  interpolating the merged weights when the adapter was trained on this base.

The output is a plain model folder (weights, config and tokenizer of the fine-tuned side, and ``talr_average.json``
recording the inputs), written to a temporary folder beside it and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from talr.model_card import average_card, write_card
from talr.run_dir import RunDir

logger = logging.getLogger(__name__)

SHARD_BYTES = 4 * 2**30
RECORD = "talr_average.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class AveragingError(ValueError):
    """The two models cannot be averaged; the message names the offending tensor or setting."""


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise AveragingError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def model_folder(spec: str | os.PathLike) -> Path:
    """A local model folder for any model spec: an embedded name, a run directory, a folder or a hub id (downloaded
    into, or read from, the Hugging Face cache)."""
    from talr.models import resolve_model_path

    resolved = resolve_model_path(spec)
    if Path(resolved).is_dir():
        return Path(resolved)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(resolved))
    except Exception as err:  # the hub client raises many types (offline, missing repo, auth)
        raise AveragingError(f"{spec} is neither a local folder nor a model the Hugging Face hub or its cache "
                             f"provides ({type(err).__name__}: {err})") from None


def finetuned_folder(spec: str | os.PathLike) -> Path:
    """Like :func:`model_folder`, but a run directory that was itself averaged yields its un-averaged weights
    (``finetuned/``), so re-averaging a run at another alpha starts from what training produced."""
    run = RunDir(spec)
    if run.record_file.is_file() and run.finetuned_dir.is_dir():
        return run.finetuned_dir
    return model_folder(spec)


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def _weight_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if single.is_file():
        with safe_open(single, framework="pt") as handle:
            return {name: single for name in handle.keys()}
    if any(folder.glob("*.bin")):
        raise AveragingError(f"{folder} holds only PyTorch .bin weights; averaging streams safetensors, so re-save "
                             "the model with save_pretrained (safetensors is the default)")
    raise AveragingError(f"{folder} has no model weights (model.safetensors or model.safetensors.index.json)")


def _check_architectures(base: Path, finetuned: Path) -> None:
    def describe(folder: Path) -> tuple:
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise AveragingError(f"{folder} has no config.json")
        config = json.loads(config_file.read_text())
        return config.get("model_type"), tuple(config.get("architectures") or ())

    if describe(base) != describe(finetuned):
        raise AveragingError(f"base {base} is {describe(base)} but fine-tuned {finetuned} is {describe(finetuned)}: "
                             "WiSE-FT needs two checkpoints of the same architecture")


def _interpolate_full(base: Path, finetuned: Path, alpha: float, out: Path, shard_bytes: int) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    _check_architectures(base, finetuned)
    base_files, finetuned_files = _weight_files(base), _weight_files(finetuned)
    only_base = sorted(set(base_files) - set(finetuned_files))
    only_finetuned = sorted(set(finetuned_files) - set(base_files))
    if only_base or only_finetuned:
        where = (f"tensor {only_base[0]!r} is in the base {base} but not in the fine-tuned model" if only_base else
                 f"tensor {only_finetuned[0]!r} is in the fine-tuned {finetuned} but not in the base model")
        raise AveragingError(f"{where} ({len(only_base) + len(only_finetuned)} such tensors)")

    shards: list[tuple[Path, list[str]]] = []
    pending: dict[str, torch.Tensor] = {}
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending, pending_bytes
        path = out / f"shard-{len(shards):05d}.tmp"
        save_file(pending, str(path), metadata={"format": "pt"})
        shards.append((path, list(pending)))
        pending, pending_bytes = {}, 0

    from tqdm.auto import tqdm

    with contextlib.ExitStack() as stack:
        handles: dict[Path, object] = {}

        def tensor(files: dict[str, Path], name: str) -> torch.Tensor:
            file = files[name]
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(file, framework="pt"))
            return handles[file].get_tensor(name)

        names = sorted(finetuned_files, key=lambda n: (str(finetuned_files[n]), n))
        for name in tqdm(names, desc=f"WiSE-FT alpha={alpha:g}", unit="tensor"):
            b, f = tensor(base_files, name), tensor(finetuned_files, name)
            if b.shape != f.shape:
                raise AveragingError(f"tensor {name!r} has shape {tuple(b.shape)} in the base {base} but "
                                     f"{tuple(f.shape)} in the fine-tuned {finetuned}")
            if f.is_floating_point():
                mixed = torch.lerp(b.float(), f.float(), alpha).to(f.dtype)
            elif torch.equal(b, f):
                mixed = f
            else:
                raise AveragingError(f"tensor {name!r} is not floating point and differs between the two models")
            pending[name] = mixed.contiguous()
            pending_bytes += mixed.numel() * mixed.element_size()
            if pending_bytes >= shard_bytes:
                flush()
        if pending or not shards:
            flush()

    if len(shards) == 1:
        shards[0][0].rename(out / "model.safetensors")
        return
    weight_map, total = {}, 0
    for k, (path, names_in_shard) in enumerate(shards, start=1):
        final = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        path.rename(out / final)
        weight_map.update({name: final for name in names_in_shard})
        total += (out / final).stat().st_size
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


def _copy_side_files(source: Path, out: Path) -> None:
    """Config, generation config and tokenizer files of the fine-tuned side (everything but weights)."""
    for file in source.iterdir():
        if not file.is_file() or file.name in _WEIGHT_INDEXES or file.name in _ADAPTER_FILES:
            continue
        if file.suffix in _WEIGHT_SUFFIXES or file.name in ("training_args.bin", RECORD):
            continue
        shutil.copy2(file, out / file.name)


def _interpolate_lora(base_spec: str, adapter: Path, alpha: float, out: Path) -> None:
    from peft import PeftModel
    from peft.helpers import rescale_adapter_scale

    from talr.models import load_model, load_tokenizer, resolve_model_path

    recorded = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    base_model, _ = load_model(base_spec)
    if recorded is not None:
        try:
            same = Path(resolve_model_path(recorded)).resolve() == Path(resolve_model_path(base_spec)).resolve()
        except FileNotFoundError:
            same = False
        if not same:
            logger.warning("The adapter %s was trained on %s, not on the base %s: the result is theta_base + "
                           "alpha * delta on the given base", adapter, recorded, base_spec)
    try:
        model = PeftModel.from_pretrained(base_model, adapter)
    except (RuntimeError, ValueError, KeyError) as err:
        raise AveragingError(f"the LoRA adapter {adapter} does not fit the base {base_spec}: {err}") from None
    with rescale_adapter_scale(model, alpha):
        merged = model.merge_and_unload()
    merged.save_pretrained(out)
    load_tokenizer(adapter).save_pretrained(out)


def _record(base, finetuned, alpha: float) -> dict:
    return {"method": "wise_ft", "alpha": alpha, "base": str(base), "finetuned": str(finetuned)}


def is_finished(out: str | os.PathLike, base, finetuned, alpha: float) -> bool:
    """Whether ``out`` already holds this exact average (same inputs and alpha)."""
    record = Path(out) / RECORD
    return record.is_file() and json.loads(record.read_text()) == _record(base, finetuned, check_alpha(alpha))


def wise_ft(base: str | os.PathLike, finetuned: str | os.PathLike, alpha: float, out: str | os.PathLike, *,
            overwrite: bool = False, shard_bytes: int = SHARD_BYTES) -> Path:
    """Write ``(1 - alpha) * base + alpha * finetuned`` as a loadable model folder ``out`` and return it.

    ``base`` and ``finetuned`` are model specs (embedded name, run directory, model folder or hub id); a fine-tuned
    folder holding a LoRA adapter is averaged by scaling the adapter. An existing ``out`` is an error unless
    ``overwrite``.
    """
    alpha = check_alpha(alpha)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty (pass overwrite=True / --overwrite)")
    finetuned_dir = finetuned_folder(finetuned)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if _is_adapter(finetuned_dir):
            _interpolate_lora(str(base), finetuned_dir, alpha, tmp)
        else:
            base_dir = model_folder(base)
            if _is_adapter(base_dir):
                raise AveragingError(f"the base {base} is a LoRA adapter; pass its merged model folder instead")
            _interpolate_full(base_dir, finetuned_dir, alpha, tmp, shard_bytes)
            _copy_side_files(finetuned_dir, tmp)
        (tmp / RECORD).write_text(json.dumps(_record(base, finetuned, alpha), indent=2) + "\n")
        write_card(tmp, *average_card(str(base), str(finetuned), alpha))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("WiSE-FT alpha=%g of %s and %s written to %s", alpha, base, finetuned, out)
    return out


def alpha_folder(out_root: str | os.PathLike, alpha: float) -> Path:
    return Path(out_root) / f"alpha_{check_alpha(alpha):g}"


def wise_ft_grid(base: str | os.PathLike, finetuned: str | os.PathLike, alphas: Iterable[float],
                 out_root: str | os.PathLike) -> list[Path]:
    """One WiSE-FT model per alpha in ``out_root/alpha_<alpha>/`` (no retraining); folders already holding the same
    average are kept, so an interrupted grid resumes. Returns the folders in the order of ``alphas``."""
    alphas: Sequence[float] = [check_alpha(a) for a in alphas]  # all checked before anything is written
    folders = []
    for alpha in alphas:
        folder = alpha_folder(out_root, alpha)
        if is_finished(folder, base, finetuned, alpha):
            logger.info("WiSE-FT alpha=%g: %s already done", alpha, folder)
        else:
            wise_ft(base, finetuned, alpha, folder)
        folders.append(folder)
    return folders


def wise_ft_from_config(base: str, finetuned: str | os.PathLike, out: str | os.PathLike, config) -> Path:
    """The ``wise_ft`` averaging axis: average a finished run's fine-tuned weights at ``config.wise_ft.alpha``."""
    return wise_ft(base, finetuned, config.wise_ft.alpha, out, overwrite=True)
