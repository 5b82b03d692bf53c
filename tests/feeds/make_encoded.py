"""Generate the legacy-encoded feed files in this folder from the Unicode texts below.

Run `python tests/feeds/make_encoded.py` to rewrite them; the generated files are committed too.
Tests import SAMPLES to compare what the collector stored with the original text.
Encoding is strict: a character the target charset cannot represent is an error here, not a `?` in a file.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

_RSS = """<?xml version="1.0"{decl}?>
<rss version="2.0">
  <channel>
    <title>{channel}</title>
    <link>https://{host}/</link>
    <description>{channel}</description>
{items}
  </channel>
</rss>
"""

_ITEM = """    <item>
      <title>{title}</title>
      <link>https://{host}/{slug}</link>
      <guid>{host}-{slug}</guid>
      <pubDate>{date}</pubDate>
      <description>{summary}</description>
    </item>"""

# name -> (python codec used to write the file, XML encoding declaration or None, language, channel, items)
SAMPLES: dict[str, dict] = {
    "gb2312_undeclared.xml": {
        "codec": "gb2312",
        "declared": None,
        "language": "zh",
        "channel": "芯片新闻",
        "items": [
            (
                "英伟达股价下跌，谷歌向Meta推销张量处理器",
                "据报道，谷歌正与Meta洽谈，计划在其数据中心使用谷歌自研的芯片。",
            ),
            (
                "人工智能泡沫担忧加剧，投资者抛售芯片股",
                "分析师将当前的投资热潮与二十多年前的互联网泡沫相比较。",
            ),
            ("亚马逊发布新一代训练芯片，性能提升四倍", "亚马逊云科技表示，新芯片将降低大模型的训练成本。"),
        ],
    },
    "gbk_declared_gb2312.xml": {
        # Declared GB2312 but uses GBK-only characters (镕, 瑢): common in the wild; read as GB18030.
        "codec": "gbk",
        "declared": "gb2312",
        "language": "zh",
        "channel": "财经要闻",
        "items": [
            ("朱镕基时代的改革与今日的芯片产业政策", "本文回顾了产业政策的变迁，以及对自研芯片的启示。"),
            ("瑢科技发布定制芯片，挑战英伟达", "这家初创公司称其芯片在推理任务上更具能效优势。"),
        ],
    },
    "big5_undeclared.xml": {
        "codec": "big5",
        "declared": None,
        "language": "zh",
        "channel": "科技新聞",
        "items": [
            (
                "輝達市值數日蒸發千億美元，谷歌向Meta推銷張量處理器",
                "據報導，Meta正與谷歌洽談在其資料中心使用該晶片。",
            ),
            ("台積電擴充先進封裝產能，滿足人工智慧晶片需求", "台積電表示，明年先進封裝產能將倍增。"),
        ],
    },
    "shift_jis_undeclared.xml": {
        "codec": "shift_jis",
        "declared": None,
        "language": "ja",
        "channel": "半導体ニュース",
        "items": [
            (
                "エヌビディア株が下落、グーグルがメタにTPUを売り込み",
                "メタはグーグルのTPUを自社のデータセンターで使う方向で協議している。",
            ),
            ("ソフトバンク、エヌビディア株を売却してオープンAIに投資", "売却額は約58億ドルにのぼる。"),
        ],
    },
    "windows1252_undeclared.xml": {
        "codec": "cp1252",
        "declared": None,
        "language": "en",
        "channel": "Chip Café Weekly",
        "items": [
            (
                "Nvidia’s “Blackwell” ramps — analysts see €40bn quarter",
                "Analysts at the café near the fab said it’s “the best launch yet” – naïve bears are quiet.",
            ),
            (
                "Google’s TPU push worries Nvidia bulls",
                "Shares fell 3% after reports that Meta could rent TPUs from Google’s cloud — “a threat”.",
            ),
        ],
    },
    "utf16_bom.xml": {
        "codec": "utf-16",  # little-endian with a BOM
        "declared": "UTF-16",
        "language": "zh",
        "channel": "双语科技",
        "items": [
            ("谷歌TPU订单激增 Google TPU orders surge", "谷歌云表示，其张量处理器的需求超过供应。"),
            ("博通定制芯片业务增长强劲", "博通预计明年人工智能收入将翻倍。"),
        ],
    },
    "utf16be_nobom.xml": {
        "codec": "utf-16-be",  # big-endian, no BOM: detected from the byte pattern of '<?xml'
        "declared": "UTF-16BE",
        "language": "en",
        "channel": "Big-Endian Bits",
        "items": [
            (
                "Intel’s Gaudi roadmap slips again",
                "The company pushed its next accelerator to 2027 — a setback.",
            ),
        ],
    },
}

DATES = ["Tue, 25 Nov 2025 08:00:00 GMT", "Mon, 24 Nov 2025 08:00:00 GMT", "Sun, 23 Nov 2025 08:00:00 GMT"]


def render(name: str) -> str:
    sample = SAMPLES[name]
    host = name.split(".")[0].replace("_", "-") + ".example.com"
    items = "\n".join(
        _ITEM.format(
            title=title, summary=summary, host=host, slug=f"a{index}", date=DATES[index % len(DATES)]
        )
        for index, (title, summary) in enumerate(sample["items"])
    )
    decl = f' encoding="{sample["declared"]}"' if sample["declared"] else ""
    return _RSS.format(decl=decl, channel=sample["channel"], host=host, items=items)


def main() -> None:
    for name, sample in SAMPLES.items():
        data = render(name).encode(sample["codec"])  # strict: fails on an unrepresentable character
        (HERE / name).write_bytes(data)
        print(f"wrote {name} ({sample['codec']}, {len(data)} bytes)")


if __name__ == "__main__":
    main()
