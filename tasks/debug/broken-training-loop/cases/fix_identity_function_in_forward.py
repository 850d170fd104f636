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



class Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g


class Wrapped(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(N_FEATURES, 2)

    def forward(self, x):
        return Identity.apply(self.lin(x))


model = Wrapped()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

EPOCHS = 20
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        outputs = model(X_train[idx])
        loss = criterion(outputs, y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    val_acc = (model(X_val).argmax(dim=1) == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
