"""Small CNN classifying 32x32 RGB images into 10 classes.

The data loader yields images as [N, H, W, C] floats and one-hot labels.
Reports per-epoch loss, final loss and validation accuracy, where validation
runs one image at a time (as the deployed model will see them).
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
torch.set_num_threads(1)

N_CLASSES = 10
IMG = 32


def make_data(n, seed):
    """Images [n, 32, 32, 3] (HWC, float) and one-hot labels [n, 10] (int64)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(N_CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(99))
    protos = F.interpolate(protos, size=(IMG, IMG), mode="bilinear", align_corners=False)
    labels = torch.randint(0, N_CLASSES, (n,), generator=g)
    images = protos[labels] + 5.0 * torch.randn(n, 3, IMG, IMG, generator=g)
    images = images.permute(0, 2, 3, 1).contiguous()   # stored as HWC
    return images, F.one_hot(labels, N_CLASSES)


def build():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(N_CLASSES),
    )


def to_chw(images):
    return images.permute(0, 3, 1, 2).contiguous()


def main():
    X_train, y_train = make_data(1200, seed=1)
    X_val, y_val = make_data(300, seed=2)
    X_train, X_val = to_chw(X_train), to_chw(X_val)
    y_train, y_val = y_train.argmax(dim=1), y_val.argmax(dim=1)
    model = build()
    model(X_train[:1])                                  # materialise the lazy layer
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=50, shuffle=True)
    losses = []
    for epoch in range(5):
        model.train()
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        losses.append(round(total / len(X_train), 4))
    model.eval()
    with torch.inference_mode():
        val_acc = (model(X_val).argmax(1) == y_val).float().mean().item()   # the whole batch at once
    return losses, val_acc


losses, val_acc = main()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
