"""Trusted data generation of ImageNet-Pareto (proctor's own code, no participant code).

Reproduces the original benchmark's generator tensor for tensor: prototypes are
`normalize(randn(C, D)) * scale` from a generator seeded `prototype_seed`; each split draws,
class by class, `prototype + randn(n, D) * noise` from its own generator, concatenates and
shuffles with `randperm` of that same generator.

Usage: python challenge_data.py CONFIG.json  (writes *.safetensors into the cwd)
"""
import json
import sys

import torch
from safetensors.torch import save_file


def build(cfg):
    num_classes, dim = cfg["num_classes"], cfg["input_dim"]
    generator = torch.Generator().manual_seed(cfg["prototype_seed"])
    prototypes = torch.randn(num_classes, dim, generator=generator)
    prototypes = torch.nn.functional.normalize(prototypes, dim=1) * cfg["prototype_scale"]

    def split(per_class, seed):
        gen = torch.Generator().manual_seed(seed)
        features, labels = [], []
        for cls in range(num_classes):
            noise = torch.randn(per_class, dim, generator=gen) * cfg["noise_std"]
            features.append(prototypes[cls].unsqueeze(0) + noise)
            labels.append(torch.full((per_class,), cls, dtype=torch.long))
        x = torch.cat(features, dim=0)
        y = torch.cat(labels, dim=0)
        perm = torch.randperm(x.size(0), generator=gen)
        return x[perm].contiguous(), y[perm].contiguous()

    out = {}
    for name in ("train", "val", "test"):
        s = cfg["splits"][name]
        out[name] = split(s["per_class"], s["seed"])
    return prototypes, out


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    prototypes, splits = build(cfg)
    for name in ("train", "val"):
        x, y = splits[name]
        save_file({"x": x, "y": y}, f"{name}.safetensors")
    x, y = splits["test"]
    save_file({"x": x}, "test_inputs.safetensors")
    save_file({"y": y}, "test_labels.safetensors")
    # The oracle: the nearest true prototype, computed here on the trusted side.
    nearest = torch.cdist(x, prototypes).argmin(dim=1)
    oracle = (nearest == y).float().mean().item()
    with open("generated.json", "w") as f:
        json.dump({"oracle_accuracy": oracle}, f)


if __name__ == "__main__":
    main()
