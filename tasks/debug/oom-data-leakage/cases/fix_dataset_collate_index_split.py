"""Custom Dataset + DataLoader with a collate_fn; index split first (shuffled indices), only the training part augmented; evaluate() decorated with @torch.no_grad()."""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

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


images, labels = make_data(1000, seed=2)

from torch.utils.data import DataLoader, Dataset


class ImageSet(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def stack_batch(items):
    xs, ys = zip(*items)
    return torch.stack(xs), torch.stack(ys)


perm = torch.randperm(len(images))
n_train = int(0.8 * len(images))
train_idx, val_idx = perm[:n_train], perm[n_train:]
X_train, y_train = augment(images[train_idx], labels[train_idx], COPIES, seed=3)
X_val, y_val = images[val_idx], labels[val_idx]

BATCH = 100
train_loader = DataLoader(ImageSet(X_train, y_train), batch_size=BATCH, shuffle=True, collate_fn=stack_batch)
train_eval_loader = DataLoader(ImageSet(X_train, y_train), batch_size=BATCH, collate_fn=stack_batch)
val_loader = DataLoader(ImageSet(X_val, y_val), batch_size=BATCH, collate_fn=stack_batch)

model = SmallCNN()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.002)


@torch.no_grad()
def evaluate(model, loader):
    """Mean loss and accuracy over a loader."""
    model.eval()
    total_loss, correct, n_batches, n = 0.0, 0, 0, 0
    for xb, yb in loader:
        out = model(xb)
        total_loss += criterion(out, yb).item()
        correct += (out.argmax(dim=1) == yb).sum().item()
        n_batches += 1
        n += len(yb)
    return total_loss / n_batches, correct / n


EPOCHS = 5
train_losses = []
for epoch in range(EPOCHS):
    model.train()
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
    train_loss, train_acc = evaluate(model, train_eval_loader)
    val_loss, val_acc = evaluate(model, val_loader)
    train_losses.append(train_loss)

losses = [round(float(l), 4) for l in train_losses]
print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
