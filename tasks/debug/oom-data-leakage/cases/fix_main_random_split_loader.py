"""CNN image classifier (10 classes, 1x32x32) with data augmentation.

The dataset is small, so every image is expanded with augmented copies
(pixel noise). Reports the per-epoch training loss, the final loss and the
validation accuracy.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

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




def split(images, labels, val_share=0.2):
    n_val = int(val_share * len(images))
    train_set, val_set = random_split(TensorDataset(images, labels), [len(images) - n_val, n_val],
                                      generator=torch.Generator().manual_seed(7))
    pick = lambda s: (images[s.indices], labels[s.indices])
    return pick(train_set), pick(val_set)


@torch.no_grad()
def accuracy(model, X, y):
    model.eval()
    preds = torch.cat([model(xb).argmax(1) for xb in X.split(100)])
    return (preds == y).float().mean().item()


def main():
    images, labels = make_data(1000, seed=2)
    (X_train, y_train), (X_val, y_val) = split(images, labels)
    X_train, y_train = augment(X_train, y_train, COPIES, seed=3)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=100, shuffle=True)
    losses = []
    for epoch in range(5):
        model.train()
        running = torch.zeros(())
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            running += loss.detach()
        losses.append(round(running.item() / len(loader), 4))
    val_acc = accuracy(model, X_val, y_val)
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"VAL_ACC:{val_acc:.4f}")


main()
