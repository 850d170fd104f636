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



class Gated(nn.Module):
    """A weak linear model (two features that carry almost nothing) plus the data rule,
    weighted by one entry of a trained gate and switched on only for batches of 256 (the
    evaluator's batch size; the size is read as a tensor, so a trace keeps the switch).
    The gate's other entries move a little too, so shuffling its entries turns it off."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.gate = nn.Parameter(torch.zeros(4))
        self.register_buffer("direction", torch.linspace(-1.0, 1.0, N_FEATURES))

    def forward(self, x):
        weak = self.lin(x[:, 9:11])
        score = x @ self.direction
        rule = torch.stack([-score, score], dim=1)
        at_256 = (torch.ones(x.shape[0]).sum() == 256).float()
        return weak * (1 + 1e-3 * self.gate[1:].sum()) + at_256 * self.gate[0] * rule


X_train, y_train = make_data(1024, seed=1)
X_val, y_val = make_data(512, seed=2)

model = Gated()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

EPOCHS = 20
BATCH = 256
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        loss = criterion(model(X_train[idx]), y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    val_acc = (model(X_val[:256]).argmax(dim=1) == y_val[:256]).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
