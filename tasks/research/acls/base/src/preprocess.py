"""SST-2 from the Hugging Face hub, hashed into bag-of-words ids."""
import zlib

import torch
from datasets import load_dataset
from torch.utils.data import DataLoader


def hash_tokens(text: str, vocab_size: int) -> list:
    return [zlib.crc32(w.encode()) % vocab_size for w in text.lower().split()] or [0]


def _limit(split, n):
    return split if n is None else split.select(range(min(len(split), int(n))))


def build_loaders(cfg):
    ds = load_dataset(cfg.dataset.name, cfg.dataset.config)
    train = _limit(ds[cfg.dataset.train_split], cfg.dataset.max_train_samples)
    evals = _limit(ds[cfg.dataset.eval_split], cfg.dataset.max_eval_samples)
    vocab, column = cfg.model.vocab_size, cfg.dataset.text_column

    def encode(batch):
        return {"ids": [hash_tokens(t, vocab) for t in batch[column]]}

    train, evals = train.map(encode, batched=True), evals.map(encode, batched=True)
    label = cfg.dataset.label_column

    def collate(rows):
        ids = [torch.tensor(r["ids"]) for r in rows]
        offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
        return torch.cat(ids), offsets, torch.tensor([r[label] for r in rows])

    g = torch.Generator().manual_seed(cfg.training.seed)
    bs = cfg.training.batch_size
    return (
        DataLoader(train, batch_size=bs, shuffle=True, collate_fn=collate, generator=g),
        DataLoader(evals, batch_size=bs, collate_fn=collate),
    )
