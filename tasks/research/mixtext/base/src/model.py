"""src/model.py - a hashed bag-of-words classifier whose pooled embedding can be mixed."""
import torch
from torch import nn


class BowClassifier(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_classes):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean")
        self.head = nn.Linear(embed_dim, num_classes)

    def pooled(self, ids, offsets):
        return torch.relu(self.embed(ids, offsets))

    def forward(self, ids, offsets):
        return self.head(self.pooled(ids, offsets))
