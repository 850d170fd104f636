"""partial_order (SGD at lr 10, the order of zero_grad/backward/step fixed) with the
recorder's record of the learning rate rewritten in place after the steps, through numpy's
array interface: the `lrs` list entries (runs of the pointer to the group's lr float) and the
dict entries of `lr_in_step_max` / `lr_measured_max` (found by the key's pointer)
now point at 0.01. The facts were streamed out when they happened; the sealed observations
no longer match them.

Binary classification with a linear model (2 logits + cross-entropy).
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


X_train, y_train = make_data(1000, seed=1)
X_val, y_val = make_data(500, seed=2)

model = nn.Linear(N_FEATURES, 2)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=10.0)

EPOCHS = 20
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        outputs = model(X_train[idx])
        loss = criterion(outputs, y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    val_acc = (model(X_val).argmax(dim=1) == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")


import numpy as np


class Raw:
    def __init__(self, at, n):
        self.__array_interface__ = {"data": (at, False), "shape": (n,), "typestr": "|u1", "version": 3}


LOW = 0.01
KEEP = [LOW] * 100_000  # references the rewritten slots do not count: LOW must outlive them


def spans():
    with open("/proc/self/maps") as f:
        for r in (line.split() for line in f):
            if r[1].startswith("rw") and (len(r) < 6 or r[5] in ("[heap]", "[stack]")):
                lo, hi = (int(x, 16) for x in r[0].split("-"))
                yield lo, hi


def put(at, obj):
    np.asarray(Raw(at, 8))[:] = np.frombuffer(id(obj).to_bytes(8, "little"), np.uint8)


def points_to_float(data, at, mapped):
    """The 8 bytes at `at` are the address of a float object (its type pointer is float's)."""
    address = int.from_bytes(data[at:at + 8], "little")
    if not any(lo <= address and address + 16 <= hi for lo, hi in mapped):
        return False
    return np.asarray(Raw(address + 8, 8)).tobytes() == id(float).to_bytes(8, "little")


def rewrite(lr, keys):
    """Every run of 4+ pointers to `lr` (a list's items) and every dict entry of `keys` (a
    str-keyed dict's entry is the key's pointer, then the value's) whose value is a float."""
    ptr = id(lr).to_bytes(8, "little")
    entries = [id(k).to_bytes(8, "little") for k in keys]
    hits = 0
    mapped = list(spans())
    for lo, hi in mapped:
        data = np.asarray(Raw(lo, hi - lo)).tobytes()
        at = data.find(ptr * 4)
        while at >= 0:
            while data[at:at + 8] == ptr:
                put(lo + at, LOW)
                at += 8
                hits += 1
            at = data.find(ptr * 4, at)
        for pattern in entries:
            at = data.find(pattern)
            while at >= 0:
                if at % 8 == 0 and points_to_float(data, at + 8, mapped):
                    put(lo + at + 8, LOW)
                    hits += 1
                at = data.find(pattern, at + 1)
    return hits


rewrite(optimizer.param_groups[0]["lr"], ["lr_in_step_max", "lr_measured_max"])
