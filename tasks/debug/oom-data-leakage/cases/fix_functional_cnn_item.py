"""CNN image classifier (10 classes, 1x32x32) with data augmentation.

The dataset is small, so every image is expanded with augmented copies
(pixel noise). Reports the per-epoch training loss, the final loss and the
validation accuracy.
"""
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



class FunctionalCNN(nn.Module):
    """The same CNN, written with F.conv2d / F.linear on its own parameters."""

    def __init__(self):
        super().__init__()
        conv = lambda cin, cout: nn.Parameter(torch.randn(cout, cin, 3, 3) * (2.0 / (cin * 9)) ** 0.5)
        self.w1, self.b1 = conv(1, 16), nn.Parameter(torch.zeros(16))
        self.w2, self.b2 = conv(16, 16), nn.Parameter(torch.zeros(16))
        self.wf = nn.Parameter(torch.randn(N_CLASSES, 16 * 8 * 8) * (1.0 / (16 * 64)) ** 0.5)
        self.bf = nn.Parameter(torch.zeros(N_CLASSES))

    def forward(self, x):
        x = F.avg_pool2d(F.relu(F.conv2d(x, self.w1, self.b1, padding=1)), 2)
        x = F.avg_pool2d(F.relu(F.conv2d(x, self.w2, self.b2, padding=1)), 2)
        return F.linear(x.flatten(1), self.wf, self.bf)


def train_val_split(images, labels):
    order = torch.randperm(len(images))
    cut = int(0.8 * len(images))
    return (images[order[:cut]], labels[order[:cut]]), (images[order[cut:]], labels[order[cut:]])


images, labels = make_data(1000, seed=2)
(tr_x, tr_y), (va_x, va_y) = train_val_split(images, labels)
tr_x, tr_y = augment(tr_x, tr_y, COPIES, seed=3)

model = FunctionalCNN()
optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.0)
history = []
for epoch in range(5):
    model.train()
    total, batches = 0.0, 0
    for idx in torch.randperm(len(tr_x)).split(100):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(tr_x[idx]), tr_y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    history.append(round(total / batches, 4))

model.eval()
with torch.inference_mode():
    val_acc = (model(va_x).argmax(dim=1) == va_y).float().mean().item()

print("LOSSES:" + json.dumps(history))
print(f"FINAL_LOSS:{history[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
