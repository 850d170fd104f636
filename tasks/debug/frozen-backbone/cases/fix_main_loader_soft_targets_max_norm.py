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


def train(model, loader, epochs):
    """Fine-tunes every parameter; targets are smoothed class probabilities."""
    optimizer = torch.optim.Adam([
        {"params": model.backbone.parameters(), "lr": 0.002},
        {"params": model.head.parameters(), "lr": 0.004},
    ])
    losses = []
    for _ in range(epochs):
        model.train()
        total, seen = 0.0, 0
        for xb, yb in loader:
            soft = F.one_hot(yb, N_CLASSES).float() * 0.95 + 0.05 / N_CLASSES
            loss = F.cross_entropy(model(xb), soft)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # max-norm on the head's class vectors
                model.head.weight.copy_(torch.renorm(model.head.weight, p=2, dim=0, maxnorm=1.0))
            total += loss.item() * len(xb)
            seen += len(xb)
        losses.append(round(total / seen, 4))
    return losses


@torch.inference_mode()
def accuracy(model, X, y):
    model.eval()
    return (model(X).argmax(dim=1) == y).float().mean().item()


def main():
    X_train, y_train = make_data(3000, seed=1)
    X_val, y_val = make_data(1000, seed=2)
    global model
    model = TransferModel()
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=100, shuffle=True)
    losses = train(model, loader, 15)
    val_acc = accuracy(model, X_val, y_val)
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"VAL_ACC:{val_acc:.4f}")


if __name__ == "__main__":
    main()
