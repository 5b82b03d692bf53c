"""Loading other models by config: label mapping from id2label, clear errors for unusable models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from monitor.classify.backend import LABELS, ModelError, label_columns
from monitor.classify.hf import load_backend
from monitor.classify.shipped import base_model_path


def tiny_model(folder: Path, id2label: dict[int, str]) -> Path:
    """A small, randomly initialised BERT classifier with the given labels, saved like any HF model."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # distinct classes, so a wrong column mapping cannot pass by accident
        model.classifier.bias.copy_(torch.linspace(2.0, -2.0, len(id2label)))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(base_model_path())).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("names", "columns"),
    [
        (["negative", "neutral", "positive"], [0, 1, 2]),
        (
            ["Bullish", "BEARISH", "neutral"],
            [2, 0, 1],
        ),  # another shape: finance spelling, other order, mixed case
        (["positive", "negative", "neutral"], [2, 0, 1]),  # ProsusAI/finbert's order
        (["NEG", "NEU", "POS"], [0, 1, 2]),
        (["negative", "positive"], [0, 2]),  # two classes: P(neutral) = 0
    ],
)
def test_label_columns(names: list[str], columns: list[int]) -> None:
    assert label_columns(dict(enumerate(names)), "m") == columns


@pytest.mark.parametrize(
    "names",
    [
        ["LABEL_0", "LABEL_1", "LABEL_2"],
        ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"],
        ["joy", "anger", "neutral"],
        ["positive", "positive", "negative"],
        ["neutral"],
    ],
)
def test_non_sentiment_labels_are_rejected(names: list[str]) -> None:
    with pytest.raises(ModelError, match="not sentiment labels"):
        label_columns(dict(enumerate(names)), "some/model")


def test_local_model_of_another_shape_is_mapped_by_id2label(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "finance-model", {0: "Bullish", 1: "BEARISH", 2: "neutral"})
    backend = load_backend(str(folder), max_length=32, batch_size=2, precision="fp32")
    assert backend.name == "finance-model" and backend.version.startswith("sha256:")
    texts = ["Nvidia surges", "Nvidia sinks", "Earnings on Wednesday"]
    got = backend.predict_proba(texts)
    batch = backend.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        raw = torch.softmax(backend.model(**batch).logits, -1).numpy()
    # model order bullish, bearish, neutral -> LABELS order negative, neutral, positive
    assert (got.argmax(1) == LABELS.index("positive")).all()  # bias favours output 0, "Bullish"
    assert np.allclose(got[:, LABELS.index("positive")], raw[:, 0], atol=1e-5)
    assert np.allclose(got[:, LABELS.index("negative")], raw[:, 1], atol=1e-5)
    assert np.allclose(got[:, LABELS.index("neutral")], raw[:, 2], atol=1e-5)


def test_local_model_with_generic_labels_fails_at_load(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "generic", {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    with pytest.raises(ModelError, match=r"generic.*not sentiment labels"):
        load_backend(str(folder))


def test_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_backend(str(tmp_path / "nowhere"))


def test_folder_without_a_model_names_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"cannot load sentiment model from folder .*empty"):
        load_backend(str(tmp_path / "empty"))


def test_hub_model_not_available_offline_says_how_to_provide_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_backend("ProsusAI/finbert")
    message = str(info.value)
    assert (
        "ProsusAI/finbert" in message and "huggingface-cli download" in message and "local folder" in message
    )


def test_hub_id_in_the_local_cache_loads_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--finance-sentiment"
    tiny_model(repo / "snapshots" / commit, {0: "positive", 1: "negative", 2: "neutral"})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    backend = load_backend("someone/finance-sentiment", precision="fp32")
    assert (backend.name, backend.version) == ("someone/finance-sentiment", commit[:12])
    assert backend.columns == [2, 0, 1]
    assert (backend.predict_proba(["Nvidia"]).argmax(1) == LABELS.index("positive")).all()


def test_corrupt_shipped_weights_are_detected(tmp_path: Path) -> None:
    import shutil

    from monitor.classify.shipped import DEFAULT_MODEL_DIR

    copy = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    with (copy / "weights.safetensors").open("r+b") as handle:
        handle.seek(-16, 2)
        handle.write(b"\x00" * 16)
    with pytest.raises(ModelError, match="checksum"):
        load_backend(str(copy))
