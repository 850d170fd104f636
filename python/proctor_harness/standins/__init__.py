"""Stand-ins for a review's smoke runs (shipped into the sandbox as `proctor_review_standins`).

Generated experiment code starts by downloading a dataset or pretrained weights; in the
offline sandbox it would stop there. `install()` replaces the well-known torchvision
datasets by synthetic ones with the real length, class count, image size/mode and the
transform interface (samples are generated on demand, deterministically), turns
pretrained-weight downloads into a random initialisation, caps every DataLoader at a few
batches, and records what it did, the scalar losses and the hyper-gradients as JSON
lines in $PROCTOR_REVIEW_EVENTS for the trusted side to read.
"""

import json
import os
import sys

EVENTS = os.environ.get("PROCTOR_REVIEW_EVENTS")
MAX_BATCHES = int(os.environ.get("PROCTOR_REVIEW_MAX_BATCHES", "3"))
MAX_EVENTS = 2000
_count = [0]
_installed = [False]


def emit(kind, **fields):
    """Appends one event (one JSON line) to the events file."""
    if not EVENTS or _count[0] >= MAX_EVENTS:
        return
    _count[0] += 1
    try:
        line = json.dumps({"kind": kind, "pid": os.getpid(), **fields}, default=str)
        with open(EVENTS, "a") as f:
            f.write(line[:20000] + "\n")
    except Exception:
        pass


def _caller(skip_files):
    """(file, line) of the innermost frame that is not in this module or torch."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name not in skip_files and "/torch/" not in name:
            return _rel(name), frame.f_lineno
        frame = frame.f_back
    return None, None


def _rel(path):
    """`path` relative to the project root (whatever the process's working directory)."""
    try:
        root = os.environ.get("PROCTOR_REVIEW_ROOT") or os.getcwd()
        path = os.path.abspath(path)
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root)
    except Exception:
        pass
    return path


def _command_line():
    """This process's whole command line (at sitecustomize time `-m MODULE` is not yet in
    sys.argv; sys.orig_argv has it)."""
    return list(getattr(sys, "orig_argv", None) or getattr(sys, "argv", []))


def record_process(argv=None):
    """Records this process (pid, parent pid, argv) so the trusted side can rebuild the tree,
    and records the exit status of every child it waits for."""
    argv = _command_line() if argv is None else argv
    emit("process", ppid=os.getppid(), argv=[str(a)[:200] for a in argv[:20]])
    import subprocess
    original_wait = subprocess.Popen.wait
    if getattr(original_wait, "_proctor", False):
        return

    def wait(self, *args, **kwargs):
        code = original_wait(self, *args, **kwargs)
        if code is not None and not getattr(self, "_proctor_reported", False):
            self._proctor_reported = True
            argv = self.args if isinstance(self.args, (list, tuple)) else [self.args]
            emit("child_exit", child=self.pid, code=code, argv=[str(a)[:200] for a in argv[:20]])
        return code

    wait._proctor = True
    subprocess.Popen.wait = wait


CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]


def _make_datasets():
    import numpy as np
    import torch
    from PIL import Image

    class StandIn(torch.utils.data.Dataset):
        """A synthetic dataset with the real one's length, classes and sample format."""

        name = "dataset"
        sizes = {"train": 1000, "test": 1000}
        shape = (32, 32, 3)
        mode = "RGB"
        num_classes = 10
        class_names = None

        def __init__(self, root=None, train=True, transform=None, target_transform=None,
                     download=False, split=None, **kwargs):
            self.root = root
            self.transform = transform
            self.target_transform = target_transform
            if split is None:
                split = "train" if train else "test"
            self.split = split
            self.train = split == "train"
            self._n = self.sizes.get(split, self.sizes["test"])
            self._seed = sorted(self.sizes).index(split) if split in self.sizes else 9
            self.classes = list(self.class_names or [f"class_{i}" for i in range(self.num_classes)])
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
            self._targets = [(i * 7 + self._seed) % self.num_classes for i in range(self._n)]
            self._data = None
            emit("standin", dataset=self.name, split=split, length=self._n, classes=self.num_classes)

        def __len__(self):
            return self._n

        def _array(self, index):
            rng = np.random.default_rng(self._seed * 1_000_003 + index)
            return rng.integers(0, 256, size=self.shape, dtype=np.uint8)

        def _image(self, index):
            arr = self._array(index)
            if self.mode == "L":
                return Image.fromarray(arr.reshape(self.shape[:2]), mode="L")
            return Image.fromarray(arr, mode=self.mode)

        def __getitem__(self, index):
            index = int(index)
            if index < 0:
                index += self._n
            if not 0 <= index < self._n:
                raise IndexError(f"index {index} out of range for {self._n} samples")
            img, target = self._image(index), self._targets[index]
            if self.transform is not None:
                img = self.transform(img)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return img, target

        @property
        def targets(self):
            return self._targets

        @targets.setter
        def targets(self, value):
            self._targets = value

        @property
        def data(self):
            if self._data is None:
                rng = np.random.default_rng(self._seed)
                self._data = rng.integers(0, 256, size=(self._n,) + self.shape, dtype=np.uint8)
            return self._data

        @data.setter
        def data(self, value):
            self._data = value

        def __repr__(self):
            return f"StandIn{self.name}(split={self.split!r}, n={self._n})"

    class CIFAR10(StandIn):
        name = "CIFAR10"
        sizes = {"train": 50_000, "test": 10_000}
        class_names = CIFAR10_CLASSES

    class CIFAR100(StandIn):
        name = "CIFAR100"
        sizes = {"train": 50_000, "test": 10_000}
        num_classes = 100

    class MNIST(StandIn):
        name = "MNIST"
        sizes = {"train": 60_000, "test": 10_000}
        shape = (28, 28, 1)
        mode = "L"
        class_names = [f"{i} - digit" for i in range(10)]

        @property
        def targets(self):
            return torch.tensor(self._targets, dtype=torch.long)

        @targets.setter
        def targets(self, value):
            self._targets = list(value)

        @property
        def data(self):
            if self._data is None:
                rng = np.random.default_rng(self._seed)
                self._data = torch.from_numpy(
                    rng.integers(0, 256, size=(self._n, 28, 28), dtype=np.uint8))
            return self._data

        @data.setter
        def data(self, value):
            self._data = value

    class FashionMNIST(MNIST):
        name = "FashionMNIST"
        class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    class KMNIST(MNIST):
        name = "KMNIST"

    class SVHN(StandIn):
        name = "SVHN"
        sizes = {"train": 73_257, "test": 26_032, "extra": 531_131}

        def __init__(self, root=None, split="train", transform=None, target_transform=None,
                     download=False, **kwargs):
            super().__init__(root, transform=transform, target_transform=target_transform,
                             split=split)

        @property
        def labels(self):
            return np.array(self._targets)

    class STL10(StandIn):
        name = "STL10"
        sizes = {"train": 5_000, "test": 8_000, "unlabeled": 100_000}
        shape = (96, 96, 3)

        def __init__(self, root=None, split="train", folds=None, transform=None,
                     target_transform=None, download=False, **kwargs):
            super().__init__(root, transform=transform, target_transform=target_transform,
                             split=split)

    folder_base = __import__("torchvision").datasets.ImageFolder

    class ImageFolder(StandIn):
        """A real ImageFolder when the folder exists; else 1,000 synthetic 224x224 images."""

        name = "ImageFolder"
        sizes = {"train": 1000, "test": 1000}
        shape = (224, 224, 3)

        def __new__(cls, root=None, *args, **kwargs):
            if root is not None and os.path.isdir(root) and any(
                    os.path.isdir(os.path.join(root, d)) for d in os.listdir(root)):
                return folder_base(root, *args, **kwargs)
            return super().__new__(cls)

        def __init__(self, root=None, transform=None, target_transform=None, **kwargs):
            super().__init__(root, transform=transform, target_transform=target_transform,
                             split="train")
            self.samples = [(f"{root}/{self.classes[t]}/{i}.png", t) for i, t in
                            enumerate(self._targets[:10])]
            self.imgs = self.samples

    return {
        "CIFAR10": (CIFAR10, "cifar"), "CIFAR100": (CIFAR100, "cifar"),
        "MNIST": (MNIST, "mnist"), "FashionMNIST": (FashionMNIST, "mnist"),
        "KMNIST": (KMNIST, "mnist"), "SVHN": (SVHN, "svhn"), "STL10": (STL10, "stl10"),
        "ImageFolder": (ImageFolder, "folder"),
    }


class _RandomInit(dict):
    """The state dict served instead of downloaded weights: loading it keeps the random init."""


def install():
    """Installs the stand-ins, the loader cap and the probes (idempotent). torch and
    torchvision are patched when (and if) the process imports them: an orchestrating
    `main.py` or an `evaluate.py` that never touches torch does not pay its import."""
    if _installed[0]:
        return
    _installed[0] = True
    try:
        from . import hub
        hub.PATCHES.update({"torch": _patch_torch, "torchvision": _patch_torchvision})
        hub.install()
    except Exception as e:
        emit("standin_error", message=repr(e))
    _patch_argparse()


def _patch_torchvision(torchvision):
    """Well-known datasets become synthetic ones; pretrained weights a random init."""
    import importlib

    tvd = torchvision.datasets
    for name, (cls, module) in _make_datasets().items():
        cls.__name__ = cls.__qualname__ = name
        setattr(tvd, name, cls)
        try:
            setattr(importlib.import_module(f"torchvision.datasets.{module}"), name, cls)
        except Exception:
            pass
    try:
        from torchvision.models import _api
        _api.WeightsEnum.get_state_dict = lambda self, *a, **k: _fake_weights(self)
    except Exception:
        pass


def _fake_weights(*args, **kwargs):
    emit("standin", weights=str(args[0]) if args else "pretrained")
    return _RandomInit()


def _patch_torch(torch):
    """Weight downloads, the DataLoader cap, and the loss and hyper-gradient probes."""
    import torch.hub
    import torch.utils.data

    torch.hub.load_state_dict_from_url = _fake_weights
    original_load = torch.nn.Module.load_state_dict

    def load_state_dict(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, _RandomInit):
            from torch.nn.modules.module import _IncompatibleKeys
            return _IncompatibleKeys([], [])
        return original_load(self, state_dict, *args, **kwargs)

    torch.nn.Module.load_state_dict = load_state_dict
    _cap_loaders(torch.utils.data.DataLoader)
    _probe_losses(torch)


def _cap_loaders(loader):
    original_iter = loader.__iter__
    original_len = loader.__len__
    capped = [False]

    def capped_iter(self):
        it = original_iter(self)
        if not capped[0]:
            capped[0] = True
            emit("capped", max_batches=MAX_BATCHES)
        for _ in range(MAX_BATCHES):
            try:
                batch = next(it)
            except StopIteration:
                return
            yield batch

    def capped_len(self):
        return min(original_len(self), MAX_BATCHES)

    loader.__iter__ = capped_iter
    loader.__len__ = capped_len


def _probe_losses(torch):
    here = {__file__, __file__.replace(".pyc", ".py")}
    # Losses (scalar backward calls): two variations with identical losses ran the same code.
    original_backward = torch.Tensor.backward
    seen = [0]

    def backward(self, *args, **kwargs):
        if seen[0] < 200 and self.numel() == 1:
            seen[0] += 1
            try:
                emit("loss", value=float(self.detach()))
            except Exception:
                pass
        return original_backward(self, *args, **kwargs)

    torch.Tensor.backward = backward

    # Hyper-gradients: torch.autograd.grad w.r.t. a few small tensors (hyper-parameters).
    original_grad = torch.autograd.grad

    def grad(outputs, inputs, *args, **kwargs):
        result = original_grad(outputs, inputs, *args, **kwargs)
        try:
            ins = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
            if 0 < len(ins) <= 16 and all(t.numel() <= 16 for t in ins):
                file, line = _caller(here)
                zero = [g is None or bool((g.detach() == 0).all()) for g in result]
                emit("hypergrad", file=file, line=line, zero=zero,
                     shapes=[list(t.shape) for t in ins])
        except Exception:
            pass
        return result

    torch.autograd.grad = grad


def _patch_argparse():
    import argparse
    original_error = argparse.ArgumentParser.error

    def error(self, message):
        import traceback
        frames = [{"file": _rel(fs.filename), "line": fs.lineno, "function": fs.name,
                   "code": (fs.line or "")[:300]} for fs in traceback.extract_stack()[:-1]]
        emit("argparse_error", type="ArgumentError", message=str(message), prog=self.prog,
             frames=frames[-40:])
        return original_error(self, message)

    argparse.ArgumentParser.error = error


def report_exception(exc):
    """Records an exception with its traceback frames (paths relative to the project)."""
    import traceback
    frames = []
    for fs in traceback.extract_tb(exc.__traceback__):
        frames.append({"file": _rel(fs.filename), "line": fs.lineno, "function": fs.name,
                       "code": (fs.line or "")[:300]})
    cause = exc.__cause__ or exc.__context__
    emit("error", type=type(exc).__name__, module=type(exc).__module__,
         message=str(exc)[:4000], frames=frames[-40:],
         cause=(f"{type(cause).__name__}: {str(cause)[:1000]}" if cause is not None else None))
