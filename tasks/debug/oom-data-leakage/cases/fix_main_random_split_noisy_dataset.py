"""CNN image classifier (10 classes, 1x32x32) with data augmentation.

The dataset is small, so every image is expanded with augmented copies
(pixel noise). Reports the per-epoch training loss, the final loss and the
validation accuracy.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

torch.manual_seed(0)
torch.set_num_threads(1)

N_CLASSES = 10
IMG = 32
COPIES = 2          # augmented copies per original image
NOISE = 3.0
DROPOUT = 0.06


def make_data(n, seed):
    """Original (un-augmented) images [n, 1, 32, 32] and labels [n]."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(N_CLASSES, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    protos = F.interpolate(protos, size=(IMG, IMG), mode="bilinear", align_corners=False)
    labels = torch.randint(0, N_CLASSES, (n,), generator=g)
    # a few captures are blank (sensor dropout): pure noise, label kept
    visible = (torch.rand(n, generator=g) >= DROPOUT).float().view(n, 1, 1, 1)
    images = visible * protos[labels] + NOISE * torch.randn(n, 1, IMG, IMG, generator=g)
    return images, labels


def augment(images, labels, copies, seed):
    """Return the originals plus `copies` pixel-noise-augmented versions of each."""
    g = torch.Generator().manual_seed(seed)
    out_x, out_y = [images], [labels]
    for _ in range(copies):
        out_x.append(images + 0.3 * torch.randn(images.shape, generator=g))
        out_y.append(labels)
    return torch.cat(out_x), torch.cat(out_y)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, kernel_size=3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 8 * 8, N_CLASSES)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


class NoisyCopies(Dataset):
    """The training originals, each served COPIES + 1 times per epoch as a fresh noisy copy."""

    def __init__(self, subset):
        self.subset = subset

    def __len__(self):
        return len(self.subset) * (COPIES + 1)

    def __getitem__(self, i):
        x, y = self.subset[i % len(self.subset)]
        return x + 0.3 * torch.randn(x.shape), y


@torch.no_grad()
def evaluate(model, loader):
    model.eval()
    total, correct, seen = 0.0, 0, 0
    for xb, yb in loader:
        out = model(xb)
        total += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(dim=1) == yb).sum().item()
        seen += len(yb)
    return total / seen, correct / seen


def main():
    images, labels = make_data(1000, seed=2)
    train_set, val_set = random_split(TensorDataset(images, labels), [800, 200],
                                      generator=torch.Generator().manual_seed(1))
    global model
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    train_loader = DataLoader(NoisyCopies(train_set), batch_size=100, shuffle=True)
    clean_train = DataLoader(train_set, batch_size=100)
    val_loader = DataLoader(val_set, batch_size=100)
    train_losses = []
    for epoch in range(5):
        model.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        train_loss, train_acc = evaluate(model, clean_train)
        val_loss, val_acc = evaluate(model, val_loader)
        train_losses.append(train_loss)
    losses = [round(float(l), 4) for l in train_losses]
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"VAL_ACC:{val_acc:.4f}")


if __name__ == "__main__":
    main()
