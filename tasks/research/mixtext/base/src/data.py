"""src/data.py - AG News from the Hugging Face hub, hashed into bag-of-words ids."""
import zlib

import torch
from datasets import load_dataset
from torch.utils.data import DataLoader


def hash_ids(text, vocab_size):
    return [zlib.crc32(w.encode()) % vocab_size for w in text.lower().split()] or [0]


def first(split, n):
    return split.select(range(min(len(split), int(n))))


def build_loaders(data_cfg, vocab_size, seed):
    ds = load_dataset(data_cfg["name"])
    train = first(ds["train"], data_cfg["max_train_samples"])
    test = first(ds["test"], data_cfg["max_eval_samples"])

    def collate(rows):
        ids = [torch.tensor(hash_ids(r["text"], vocab_size)) for r in rows]
        offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
        return torch.cat(ids), offsets, torch.tensor([r["label"] for r in rows])

    g = torch.Generator().manual_seed(seed)
    bs = data_cfg["batch_size"]
    return (
        DataLoader(train, batch_size=bs, shuffle=True, collate_fn=collate, generator=g),
        DataLoader(test, batch_size=bs, collate_fn=collate),
    )
