"""Small CNN classifying 32x32 RGB images into 10 classes.

The data loader yields images as [N, H, W, C] floats and one-hot labels.
Reports per-epoch loss, final loss and validation accuracy.

Fixed with DataLoaders: a collate function turns HWC images into CHW batches and one-hot
labels into class indices; validation runs batched under inference_mode. The model has no
dropout or batch norm, so it never leaves train mode (model.eval() would change nothing).
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


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 8 * 32, N_CLASSES)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc(x)


def collate(rows):
    images = torch.stack([r[0] for r in rows]).permute(0, 3, 1, 2)
    labels = torch.stack([r[1] for r in rows]).argmax(dim=1)
    return images, labels


def loaders():
    X_train, y_train = make_data(1200, seed=1)
    X_val, y_val = make_data(300, seed=2)
    train = DataLoader(TensorDataset(X_train, y_train), batch_size=50, shuffle=True, collate_fn=collate)
    val = DataLoader(TensorDataset(X_val, y_val), batch_size=100, collate_fn=collate)
    return train, val


def accuracy(model, loader):
    correct = total = 0
    with torch.inference_mode():
        for x, y in loader:
            correct += (model(x).argmax(dim=1) == y).sum().item()
            total += len(y)
    return correct / total


def main():
    train, val = loaders()
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    losses = []
    for epoch in range(5):
        total, n = 0.0, 0
        for x, y in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            n += len(y)
        losses.append(round(total / n, 4))
    val_acc = accuracy(model, val)
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"VAL_ACC:{val_acc:.4f}")


if __name__ == "__main__":
    main()
