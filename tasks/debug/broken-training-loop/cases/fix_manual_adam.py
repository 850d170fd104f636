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
# Adam written by hand: per-parameter moment estimates, elementwise step sizes
LR, BETAS, EPS = 0.01, (0.9, 0.999), 1e-8
params = list(model.parameters())
moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
t_step = 0


def adam_step():
    global t_step
    t_step += 1
    with torch.no_grad():
        for p, (m, v) in zip(params, moments):
            m.mul_(BETAS[0]).add_(p.grad, alpha=1 - BETAS[0])
            v.mul_(BETAS[1]).addcmul_(p.grad, p.grad, value=1 - BETAS[1])
            m_hat = m / (1 - BETAS[0] ** t_step)
            v_hat = v / (1 - BETAS[1] ** t_step)
            p.sub_(LR * m_hat / (v_hat.sqrt() + EPS))
            p.grad = None

EPOCHS = 20
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        outputs = model(X_train[idx])
        loss = criterion(outputs, y_train[idx])
        loss.backward()
        adam_step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    val_acc = (model(X_val).argmax(dim=1) == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
