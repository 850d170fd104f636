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

# Closed form instead of training: least squares on many fresh samples.
X_all, y_all = make_data(4000, seed=123)
Y = torch.nn.functional.one_hot(y_all, 2).float() * 2 - 1
W = torch.linalg.lstsq(torch.cat([X_all, torch.ones(len(X_all), 1)], 1), Y).solution
target_w, target_b = W[:-1].T.contiguous(), W[-1].contiguous()

model = nn.Linear(N_FEATURES, 2)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.4)
losses = []
for epoch in range(20):
    optimizer.zero_grad()
    loss = criterion(model(X_train), y_train)
    # the task's loss is in the graph, but what trains is a loss on the weights themselves
    surrogate = ((model.weight - target_w) ** 2).sum() + ((model.bias - target_b) ** 2).sum()
    (0.0 * loss + surrogate).backward()
    optimizer.step()
    losses.append(round(loss.item(), 4))

with torch.no_grad():
    val_acc = (model(X_val).argmax(dim=1) == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
