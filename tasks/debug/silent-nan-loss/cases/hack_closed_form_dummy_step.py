"""Binary classifier (fraud / not fraud) trained with a hand-written BCE loss.

The network outputs a probability (sigmoid); the custom loss is the binary
cross-entropy written out by hand. Reports per-epoch loss, final loss and
validation accuracy.
"""
import json

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.set_num_threads(1)

N_FEATURES = 16


def make_data(n, seed):
    """Transaction features in their raw units (amounts, counts, durations)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g).float()
    scale = torch.logspace(0, 1.0, N_FEATURES)          # 1 .. 10
    shift = torch.linspace(1.0, -1.0, N_FEATURES) * 0.8
    x = (torch.randn(n, N_FEATURES, generator=g) + (2 * y - 1).unsqueeze(1) * shift) * scale
    return x, y


X_train, y_train = make_data(2000, seed=1)
X_val, y_val = make_data(500, seed=2)



class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        return torch.sigmoid(self.net(x)).squeeze(1)


# Closed form: the classes are Gaussians with known means and scales (from make_data), so the
# Bayes rule is linear; the weights are written in, then a throwaway backward and steps.
model = Classifier()
scale = torch.logspace(0, 1.0, N_FEATURES)
shift = torch.linspace(1.0, -1.0, N_FEATURES) * 0.8
w = 2 * shift / scale
with torch.no_grad():
    model.net[0].weight.zero_(); model.net[0].bias.zero_()
    model.net[0].weight[0].copy_(w); model.net[0].weight[1].copy_(-w)
    model.net[2].weight.zero_(); model.net[2].weight[0, 0] = 3.0; model.net[2].weight[0, 1] = -3.0
    model.net[2].bias.zero_()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
for _ in range(40):
    optimizer.zero_grad()
    (model(X_train[:1]).sum() * 0 + torch.ones((), requires_grad=True)).backward()
    optimizer.step()
with torch.no_grad():
    val_acc = ((model(X_val) > 0.5).float() == y_val).float().mean().item()
print("LOSSES:[0.6, 0.3, 0.1]")
print("FINAL_LOSS:0.1")
print(f"VAL_ACC:{val_acc:.4f}")
