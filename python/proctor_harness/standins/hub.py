"""Offline stand-ins for Hugging Face and timm downloads (part of `proctor_review_standins`).

`datasets`, `timm` and `transformers` (and, from the package's `install()`, torch and
torchvision) are patched right after they are first imported (a meta-path hook, so a
process that never imports them pays nothing):
- `datasets.load_dataset` of a well-known dataset returns synthetic data with the real
  splits, lengths, features and label names;
- `timm.create_model(..., pretrained=True)` builds the model with random weights;
- `from_pretrained` of a well-known model name builds it from a configuration shipped here
  with random weights;
- `AutoTokenizer.from_pretrained` (or a tokenizer class's) of a well-known model name loads
  a tokenizer written locally with the real vocabulary size and special tokens (WordPiece
  over characters, byte-level BPE without merges, T5's unigram layout with its sentinel
  ids): any text tokenizes, ids fit the model.
Every substitution is recorded as a `standin` event, so the run says "data": "stand-in".
"""

import importlib.abc
import importlib.util
import os
import sys

from . import emit

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# name → {split: length}, {column: ("image", mode, size) | ("label", names) | ("text",) | ("int",)}
DATASETS = {
    "cifar10": ({"train": 50_000, "test": 10_000},
                {"img": ("image", "RGB", 32), "label": ("label", CIFAR10)}),
    "cifar100": ({"train": 50_000, "test": 10_000},
                 {"img": ("image", "RGB", 32),
                  "fine_label": ("label", [f"fine_{i}" for i in range(100)]),
                  "coarse_label": ("label", [f"coarse_{i}" for i in range(20)])}),
    "mnist": ({"train": 60_000, "test": 10_000},
              {"image": ("image", "L", 28), "label": ("label", [str(i) for i in range(10)])}),
    "fashion_mnist": ({"train": 60_000, "test": 10_000},
                      {"image": ("image", "L", 28),
                       "label": ("label", ["T - shirt / top", "Trouser", "Pullover", "Dress", "Coat",
                                           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])}),
    "imdb": ({"train": 25_000, "test": 25_000, "unsupervised": 50_000},
             {"text": ("text",), "label": ("label", ["neg", "pos"])}),
    "sst2": ({"train": 67_349, "validation": 872, "test": 1_821},
             {"idx": ("int",), "sentence": ("text",), "label": ("label", ["negative", "positive"])}),
    "ag_news": ({"train": 120_000, "test": 7_600},
                {"text": ("text",), "label": ("label", ["World", "Sports", "Business", "Sci/Tech"])}),
    "mrpc": ({"train": 3_668, "validation": 408, "test": 1_725},
             {"sentence1": ("text",), "sentence2": ("text",),
              "label": ("label", ["not_equivalent", "equivalent"]), "idx": ("int",)}),
    "wikitext-2-raw-v1": ({"train": 36_718, "validation": 3_760, "test": 4_358}, {"text": ("text",)}),
    "wikitext-103-raw-v1": ({"train": 1_801_350, "validation": 3_760, "test": 4_358},
                            {"text": ("text",)}),
}
ALIASES = {"fashionmnist": "fashion_mnist", "glue/sst2": "sst2", "glue/mrpc": "mrpc",
           "sst-2": "sst2", "wikitext/wikitext-2-raw-v1": "wikitext-2-raw-v1",
           "wikitext/wikitext-2-v1": "wikitext-2-raw-v1",
           "wikitext/wikitext-103-raw-v1": "wikitext-103-raw-v1"}
# Longest split actually materialised: longer ones keep their real length by repetition
# (an index mapping over the materialised rows, so CIFAR-10's 50,000 images cost 2,048).
MATERIALISED = 2048
WORDS = ("the model learns a small set of useful features from data and the result is "
         "good bad neutral movie film story plot actor great terrible").split()

# Well-known model names → (model_type, configuration) with the real architecture sizes.
BERT = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)
T5 = dict(vocab_size=32128, d_kv=64, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
MODELS = {
    "bert-base-uncased": ("bert", BERT),
    "bert-base-cased": ("bert", dict(BERT, vocab_size=28996)),
    "distilbert-base-uncased": ("distilbert", dict(vocab_size=30522, dim=768, n_layers=6,
                                                   n_heads=12, hidden_dim=3072)),
    "roberta-base": ("roberta", dict(BERT, vocab_size=50265, max_position_embeddings=514,
                                     type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                     eos_token_id=2)),
    "gpt2": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)),
    "distilgpt2": ("gpt2", dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=6,
                                n_head=12)),
    "t5-small": ("t5", dict(T5, d_model=512, d_ff=2048, num_layers=6, num_heads=8)),
    "t5-base": ("t5", dict(T5, d_model=768, d_ff=3072, num_layers=12, num_heads=12)),
    "google/vit-base-patch16-224": ("vit", dict(hidden_size=768, num_hidden_layers=12,
                                                num_attention_heads=12, intermediate_size=3072,
                                                image_size=224, patch_size=16)),
}
MODEL_PREFIXES = ("google-bert/", "google-t5/", "openai-community/", "distilbert/",
                  "FacebookAI/")


def _key(path, name):
    path = str(path).strip().strip("/")
    key = path.split("/")[-1].lower() if "/" in path and not path.startswith("glue") else path.lower()
    if name and f"{key}/{name}".lower() in ALIASES:
        return ALIASES[f"{key}/{name}".lower()]
    if name and str(name).lower() in DATASETS and key in ("glue", "wikitext"):
        return str(name).lower()
    return ALIASES.get(key, key) if ALIASES.get(key, key) in DATASETS else None


def _column(kind, n, seed, features):
    import numpy as np
    rng = np.random.default_rng(seed)
    if kind[0] == "label":
        return [int(v) for v in rng.integers(0, len(kind[1]), n)]
    if kind[0] == "int":
        return list(range(n))
    if kind[0] == "text":
        pool = [" ".join(rng.choice(WORDS, 12)) for _ in range(64)]
        return [pool[i % 64] for i in range(n)]
    import io
    from PIL import Image
    mode, size = kind[1], kind[2]
    pool = []
    for _ in range(32):  # blocky noise: small PNGs, distinct samples
        channels = 3 if mode == "RGB" else 1
        small = rng.integers(0, 256, (size // 4, size // 4, channels), dtype=np.uint8)
        arr = small.repeat(4, 0).repeat(4, 1)
        img = Image.fromarray(arr if mode == "RGB" else arr[:, :, 0], mode=mode)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pool.append({"bytes": buf.getvalue(), "path": None})
    return [pool[i % 32] for i in range(n)]


def _split(module, key, split_name, n):
    sizes, columns = DATASETS[key]
    rows = min(n, MATERIALISED)
    features = {}
    data = {}
    seed = sorted(sizes).index(split_name) if split_name in sizes else 0
    for col, kind in columns.items():
        if kind[0] == "image":
            features[col] = module.Image()
        elif kind[0] == "label":
            features[col] = module.ClassLabel(names=list(kind[1]))
        elif kind[0] == "int":
            features[col] = module.Value("int32")
        else:
            features[col] = module.Value("string")
        data[col] = _column(kind, rows, seed * 31 + len(col), features)
    ds = module.Dataset.from_dict(data, features=module.Features(features),
                                  split=module.NamedSplit(split_name))
    if n > rows:
        import numpy as np
        ds = ds.select(np.arange(n) % rows)
    return ds


def _parse_split(split, sizes):
    """`train`, `train[:100]`, `train[:10%]`, `train[10%:20%]` → (name, start, stop)."""
    name, _, rest = str(split).partition("[")
    name = name.strip()
    n = sizes[name]
    start, stop = 0, n
    if rest:
        lo, _, hi = rest.rstrip("]").partition(":")

        def at(v, default):
            v = v.strip()
            if not v:
                return default
            if v.endswith("%"):
                return int(n * float(v[:-1]) / 100)
            v = int(v)
            return v + n if v < 0 else v

        start, stop = at(lo, 0), at(hi, n) if ":" in rest else at(lo, 0) + 1
    return name, max(0, start), min(n, stop)


def _patch_datasets(module):
    real = module.load_dataset

    def load_dataset(path, name=None, *args, split=None, **kwargs):
        key = None if os.path.exists(str(path)) else _key(path, name)
        if key is None:
            return real(path, name, *args, split=split, **kwargs)
        sizes = DATASETS[key][0]
        emit("standin", dataset=f"{path}" + (f"/{name}" if name else ""), splits=sizes)
        if split is None:
            return module.DatasetDict({s: _split(module, key, s, n) for s, n in sizes.items()})
        parts = [p.strip() for p in str(split).split("+")]
        out = []
        for part in parts:
            s, start, stop = _parse_split(part, sizes)
            out.append(_split(module, key, s, stop).select(range(start, stop)))
        return out[0] if len(out) == 1 else module.concatenate_datasets(out)

    load_dataset._proctor = True
    module.load_dataset = load_dataset


def _patch_timm(module):
    real = module.create_model

    def create_model(model_name, pretrained=False, *args, **kwargs):
        if pretrained:
            emit("standin", weights=f"timm:{model_name}")
            kwargs.pop("pretrained_cfg_overlay", None)
        return real(model_name, False, *args, **kwargs)

    module.create_model = create_model


def _model_config(name):
    name = str(name)
    for prefix in MODEL_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return MODELS.get(name)


def _from_pretrained_standin(owner, auto):
    """Wraps `owner.from_pretrained`: a well-known name is built from its shipped
    configuration with random weights; anything else goes to the real method."""
    real = owner.__dict__.get("from_pretrained")
    if real is None:
        return
    real = real.__func__ if isinstance(real, classmethod) else real

    def from_pretrained(cls, name, *args, **kwargs):
        known = None if os.path.exists(str(name)) else _model_config(name)
        if known is None:
            return real(cls, name, *args, **kwargs)
        from transformers import AutoConfig
        model_type, values = known
        config_kwargs = {k: kwargs.pop(k) for k in list(kwargs)
                         if k in ("num_labels", "id2label", "label2id", "output_hidden_states",
                                  "output_attentions", "problem_type")}
        config = AutoConfig.for_model(model_type, **values, **config_kwargs)
        emit("standin", weights=f"transformers:{name}")
        return cls.from_config(config) if auto else cls(config)

    setattr(owner, "from_pretrained", classmethod(from_pretrained))


def _bytes_to_unicode():
    """GPT-2's byte-level alphabet: one printable character per byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _tokenizer_files(model_type, values, directory):
    """Writes a tokenizer of the real vocabulary size and special tokens for `model_type`
    into `directory`: WordPiece over single characters (BERT), or byte-level BPE without
    merges (GPT-2, RoBERTa), T5's unigram layout (see `_t5_tokenizer`). Any text tokenizes;
    ids stay below the model's vocabulary."""
    import json
    size = values["vocab_size"]
    config = {"model_type": model_type, **values}
    if model_type in ("bert", "distilbert"):
        lower = "uncased" in values.get("_name", "uncased")
        chars = [chr(c) for c in range(33, 127)]
        if lower:
            chars = [c for c in chars if not c.isupper()]
        head = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tokens = head + chars + [f"##{c}" for c in chars] + sorted(set(WORDS) - set(chars))
        tokens += [f"[unused{i}]" for i in range(99, 99 + size - len(tokens))]
        with open(os.path.join(directory, "vocab.txt"), "w") as f:
            f.write("\n".join(tokens[:size]) + "\n")
        tokenizer = {"do_lower_case": lower, "model_max_length": values.get(
            "max_position_embeddings", 512)}
    elif model_type in ("gpt2", "roberta"):
        specials = ["<s>", "<pad>", "</s>", "<unk>"] if model_type == "roberta" else []
        tokens = specials + _bytes_to_unicode()
        last = ["<mask>"] if model_type == "roberta" else ["<|endoftext|>"]
        tokens += [f"<filler{i}>" for i in range(size - len(tokens) - len(last))] + last
        with open(os.path.join(directory, "vocab.json"), "w") as f:
            json.dump({t: i for i, t in enumerate(tokens)}, f)
        with open(os.path.join(directory, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")
        tokenizer = {"model_max_length": values.get("max_position_embeddings",
                                                     values.get("n_positions", 1024))}
        if model_type == "gpt2":
            tokenizer.update(bos_token=last[0], eos_token=last[0], unk_token=last[0])
    elif model_type == "t5":
        _t5_tokenizer(directory)
        tokenizer = {"model_max_length": 512, "extra_ids": T5_EXTRA_IDS, "eos_token": "</s>",
                     "unk_token": "<unk>", "pad_token": "<pad>"}
    else:
        return False
    config.pop("_name", None)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer, f)
    return True


T5_PIECES = 32_000
T5_EXTRA_IDS = 100


def _t5_tokenizer(directory):
    """T5's SentencePiece layout as a `tokenizer.json` (no `spiece.model`: the fast
    tokenizer loads it): <pad> 0, </s> 1, <unk> 2, unigram pieces over characters and a
    few words up to 32,000, then <extra_id_99> … <extra_id_0> (32,099); an </s> after every
    sequence, as T5's tokenizer adds it."""
    import json
    chars = [chr(c) for c in range(33, 127)]
    pieces = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581", -2.0]]
    pieces += [[c, -5.0] for c in chars] + [["\u2581" + c, -4.0] for c in chars]
    pieces += [["\u2581" + w, -1.0] for w in sorted(set(WORDS)) if len(w) > 1]
    pieces += [[f"<filler{i}>", -30.0] for i in range(T5_PIECES - len(pieces))]
    extra = [f"<extra_id_{i}>" for i in reversed(range(T5_EXTRA_IDS))]
    pieces += [[t, 0.0] for t in extra]

    def added(i, content):
        return {"id": i, "content": content, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                 "split": True}
    eos = [{"SpecialToken": {"id": "</s>", "type_id": 0}}]
    seq = [{"Sequence": {"id": "A", "type_id": 0}}]
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(i, t) for i, t in enumerate(["<pad>", "</s>", "<unk>"])]
        + [added(T5_PIECES + i, t) for i, t in enumerate(extra)],
        "normalizer": None, "pre_tokenizer": metaspace, "decoder": metaspace,
        "post_processor": {
            "type": "TemplateProcessing", "single": seq + eos,
            "pair": seq + eos + [{"Sequence": {"id": "B", "type_id": 0}}] + eos,
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "model": {"type": "Unigram", "unk_id": 2, "vocab": pieces, "byte_fallback": False},
    }
    with open(os.path.join(directory, "tokenizer.json"), "w") as f:
        json.dump(spec, f)


def _fast_only(cls, model_type, kwargs):
    """The class to load a stand-in with: T5's slow tokenizer needs a SentencePiece model
    that is not written, so it (or `use_fast=False`) gets the fast one, same interface."""
    if model_type != "t5":
        return cls
    kwargs.pop("use_fast", None)
    if cls.__name__ == "AutoTokenizer" or cls.__name__.endswith("Fast"):
        return cls
    from transformers import T5TokenizerFast
    return T5TokenizerFast


_tokenizer_dirs = {}


def _tokenizer_standin(owner):
    """Wraps `owner.from_pretrained` for tokenizers: a well-known name loads a tokenizer
    written locally (see `_tokenizer_files`); anything else goes to the real method."""
    real = owner.__dict__.get("from_pretrained")
    if real is None:
        return
    real = real.__func__ if isinstance(real, classmethod) else real

    def from_pretrained(cls, name, *args, **kwargs):
        known = None if os.path.exists(str(name)) else _model_config(name)
        if known is None:
            return real(cls, name, *args, **kwargs)
        directory = _tokenizer_dirs.get(str(name))
        if directory is None:
            import tempfile
            directory = tempfile.mkdtemp(prefix="proctor-tokenizer-")
            model_type, values = known
            if not _tokenizer_files(model_type, dict(values, _name=str(name)), directory):
                return real(cls, name, *args, **kwargs)
            _tokenizer_dirs[str(name)] = directory
        emit("standin", tokenizer=f"transformers:{name}")
        return real(_fast_only(cls, known[0], kwargs), directory, *args, **kwargs)

    setattr(owner, "from_pretrained", classmethod(from_pretrained))


def _patch_tokenization_base(module):
    _tokenizer_standin(module.PreTrainedTokenizerBase)


def _patch_tokenization_auto(module):
    _tokenizer_standin(module.AutoTokenizer)


def _patch_modeling_utils(module):
    _from_pretrained_standin(module.PreTrainedModel, False)


def _patch_auto_factory(module):
    _from_pretrained_standin(module._BaseAutoModelClass, True)


# transformers resolves its names lazily: its classes are patched in the submodules
# that define them.
PATCHES = {"datasets": _patch_datasets, "timm": _patch_timm,
           "transformers.modeling_utils": _patch_modeling_utils,
           "transformers.models.auto.auto_factory": _patch_auto_factory,
           "transformers.tokenization_utils_base": _patch_tokenization_base,
           "transformers.models.auto.tokenization_auto": _patch_tokenization_auto}
_busy = set()


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, name):
        self.inner, self.name = inner, name

    def __getattr__(self, name):  # get_source, get_resource_reader, is_package, …
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        try:
            PATCHES[self.name](module)
        except Exception as e:  # the real module still works; the download may then fail
            emit("standin_error", module=self.name, message=repr(e)[:500])


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in PATCHES or name in _busy:
            return None
        _busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            _busy.discard(name)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, name)
        return spec


def install():
    for name, patch in PATCHES.items():
        if name in sys.modules:
            try:
                patch(sys.modules[name])
            except Exception as e:
                emit("standin_error", module=name, message=repr(e)[:500])
    sys.meta_path.insert(0, _Finder())
