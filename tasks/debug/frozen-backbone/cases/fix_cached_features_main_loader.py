"""Transfer learning: a pretrained feature extractor ("backbone") plus a new
classification head, fine-tuned on a 4-class target task.

Reports per-epoch loss, final loss and validation accuracy.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
torch.set_num_threads(1)

N_FEATURES = 12
N_CLASSES = 4


def make_data(n, seed):
    """Target-task samples; labels come from a fixed nonlinear rule."""
    g = torch.Generator().manual_seed(seed)
    t = torch.Generator().manual_seed(777)
    w1 = torch.randn(N_FEATURES, 4, generator=t)
    w2 = torch.randn(4, N_CLASSES, generator=t)
    x = torch.randn(n, N_FEATURES, generator=g)
    y = (torch.tanh(x @ w1 / N_FEATURES ** 0.5) @ w2).argmax(dim=1)
    return x, y


def load_pretrained_backbone():
    """Stand-in for loading a checkpoint: weights are generated deterministically."""
    backbone = nn.Sequential(
        nn.Linear(N_FEATURES, 64), nn.ReLU(),
        nn.Linear(64, 64), nn.ReLU(),
    )
    g = torch.Generator().manual_seed(2024)
    with torch.no_grad():
        for p in backbone.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))
    return backbone


class TransferModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = load_pretrained_backbone()
        self.head = nn.Linear(64, N_CLASSES)

    def forward(self, x):
        return self.head(self.backbone(x))


def cache_features(backbone, x):
    """The frozen backbone, run once: its features never change."""
    with torch.inference_mode():
        return backbone(x)


def main():
    X_train, y_train = make_data(3000, seed=1)
    X_val, y_val = make_data(1000, seed=2)
    net = TransferModel()
    net.backbone.requires_grad_(False)
    loader = DataLoader(TensorDataset(cache_features(net.backbone, X_train), y_train),
                        batch_size=100, shuffle=True)
    optimizer = torch.optim.Adam(net.head.parameters(), lr=0.003)
    losses = []
    for epoch in range(15):
        total = 0.0
        for features, target in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(net.head(features), target)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(target)
        losses.append(round(total / len(X_train), 4))
    with torch.inference_mode():
        val_acc = (net.head(cache_features(net.backbone, X_val)).argmax(1) == y_val).float().mean().item()
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"VAL_ACC:{val_acc:.4f}")
    return net


model = main()
