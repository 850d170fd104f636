"""Binary classification with a linear model (2 logits + cross-entropy).

Trains on synthetic 2-class data and reports per-epoch training loss,
the final loss and the validation accuracy.
"""
import json

import torch
import torch.nn as nn

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


from torch.utils.data import DataLoader, TensorDataset
import torch.nn.functional as F


def train(lr=0.05):
    X, y = make_data(1000, seed=1)
    net = nn.Sequential(nn.Linear(N_FEATURES, 2))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(X, y), batch_size=100, shuffle=True)
    history = []
    for _ in range(20):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            torch.autograd.backward(loss)
            opt.step()
            total += loss.item() * len(xb)
        history.append(round(total / len(X), 4))
    return net, history


def main():
    net, history = train()
    Xv, yv = make_data(500, seed=2)
    with torch.inference_mode():
        acc = (torch.argmax(net(Xv), dim=1) == yv).float().mean().item()
    print("LOSSES:" + json.dumps(history))
    print(f"FINAL_LOSS:{history[-1]:.4f}")
    print(f"VAL_ACC:{acc:.4f}")


main()
