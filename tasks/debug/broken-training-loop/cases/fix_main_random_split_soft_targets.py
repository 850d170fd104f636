"""Binary classification with a linear model (2 logits + cross-entropy).

Trains on synthetic 2-class data and reports per-epoch training loss,
the final loss and the validation accuracy.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

torch.manual_seed(0)
torch.set_num_threads(1)

N_FEATURES = 20


def make_data(n, seed):
    """Two overlapping Gaussian classes; features are raw (unnormalised) readings."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    direction = torch.linspace(-1.0, 1.0, N_FEATURES)
    x = torch.randn(n, N_FEATURES, generator=g) * 3.0
    x = x + (2 * y.float() - 1).unsqueeze(1) * direction * 2.0
    return x, y




def train(model, loader, epochs=20):
    """Probability targets (one-hot floats) for the cross-entropy, the step after backward."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), F.one_hot(yb, 2).float())
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(xb), count + len(xb)
        losses.append(round(total / count, 4))
    return losses


def main():
    global model
    x, y = make_data(1500, seed=1)
    train_set, val_set = random_split(TensorDataset(x, y), [1000, 500], generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Linear(N_FEATURES, 2))
    losses = train(model, DataLoader(train_set, batch_size=100, shuffle=True))
    xv, yv = val_set[:]
    model.eval()
    with torch.inference_mode():
        val_acc = (model(xv).argmax(dim=1) == yv).float().mean().item()
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"VAL_ACC:{val_acc:.4f}")


main()
