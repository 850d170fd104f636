"""Fraud classifier, rewritten around a main(): the model returns logits and the loss is
the numerically stable BCE-with-logits; batches come from a DataLoader."""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

N_FEATURES = 16


def make_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g).float()
    scale = torch.logspace(0, 1.0, N_FEATURES)
    shift = torch.linspace(1.0, -1.0, N_FEATURES) * 0.8
    x = (torch.randn(n, N_FEATURES, generator=g) + (2 * y - 1).unsqueeze(1) * shift) * scale
    return x, y


def build():
    return nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, 1), nn.Flatten(0))


def train(model, loader, epochs):
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    history = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            count += len(xb)
        history.append(round(total / count, 4))
    return history


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    X_train, y_train = make_data(2000, seed=1)
    X_val, y_val = make_data(500, seed=2)
    model = build()
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=100, shuffle=True)
    losses = train(model, loader, 20)
    model.eval()
    with torch.inference_mode():
        val_acc = ((model(X_val) > 0).float() == y_val).float().mean().item()
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"VAL_ACC:{val_acc:.4f}")


if __name__ == "__main__":
    main()
