"""A hashed bag-of-words sentence classifier."""
import torch
from torch import nn


class BowClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, num_classes: int):
        super().__init__()
        self.embed = MODEL_PLACEHOLDER
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(ids, offsets)))
