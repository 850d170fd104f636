"""Seed corpora for the fuzz targets: pickles shaped like torch.save(model)
(protocol 2, persistent storage ids; stand-in classes under torch's module names, so torch
is not needed) and the counting paths' attack shapes (values popped, left on the stack,
passed to constructors, kept on parameters; memo references; wide and huge ints); for
`archive`, small models and attacks as whole model.pt zips.

    python3 make_seeds.py corpus/pickle corpus/archive
    cargo +nightly fuzz run pickle corpus/pickle
"""
import collections, io, marshal, os, pickle, struct, sys, types, zipfile

OD = collections.OrderedDict


def stand_in(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


utils = stand_in("torch._utils")
stand_in("torch").FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
for name in ["_rebuild_tensor_v2", "_rebuild_parameter"]:
    f = lambda *a: None
    f.__name__ = f.__qualname__ = name
    f.__module__ = "torch._utils"
    setattr(utils, name, f)


class Storage:
    def __init__(self, numel):
        self.numel = numel


class Tensor:
    def __init__(self, shape, param=False):
        self.shape, self.param = shape, param
        numel = 1
        for d in shape:
            numel *= d
        self.storage = Storage(numel)

    def __reduce_ex__(self, protocol):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        rebuild = (utils._rebuild_tensor_v2,
                   (self.storage, 0, tuple(self.shape), tuple(stride), False, OD()))
        if self.param:
            return utils._rebuild_parameter, (Rebuilt(rebuild), True, OD())
        return rebuild


class Rebuilt:
    def __init__(self, reduced):
        self.reduced = reduced

    def __reduce_ex__(self, protocol):
        return self.reduced


def module(path, params=(), buffers=(), children=(), **settings):
    module_name, name = path.rsplit(".", 1)
    home = sys.modules.get(module_name) or stand_in(module_name)
    if not hasattr(home, name):
        setattr(home, name, type(name, (), {"__module__": module_name}))
    cls = getattr(home, name)
    m = cls.__new__(cls)
    hooks = ["_backward_pre_hooks", "_backward_hooks", "_forward_hooks",
             "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
             "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
             "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"]
    m.__dict__.update(training=True, _parameters=OD(params), _buffers=OD(buffers),
                      _non_persistent_buffers_set=set(), _is_full_backward_hook=None,
                      _modules=OD(children), **{h: OD() for h in hooks}, **settings)
    return m


def linear(i, o):
    return module("torch.nn.modules.linear.Linear",
                  [("weight", Tensor([o, i], True)), ("bias", Tensor([o], True))],
                  in_features=i, out_features=o)


def batchnorm(n):
    return module("torch.nn.modules.batchnorm.BatchNorm1d",
                  [("weight", Tensor([n], True)), ("bias", Tensor([n], True))],
                  [("running_mean", Tensor([n])), ("running_var", Tensor([n])),
                   ("num_batches_tracked", Tensor([]))],
                  num_features=n, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)


def relu():
    return module("torch.nn.modules.activation.ReLU", inplace=False)


def sequential(*ms):
    return module("torch.nn.modules.container.Sequential",
                  children=[(str(i), m) for i, m in enumerate(ms)])


def torch_save(obj):
    """The pickle, and the numel of each storage key."""
    keys, sizes = {}, {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = keys.setdefault(id(o), str(len(keys)))
                sizes[key] = o.numel
                return ("storage", sys.modules["torch"].FloatStorage, key, "cpu", o.numel)
            return None

    out = io.BytesIO()
    Pickler(out, protocol=2).dump(obj)
    return out.getvalue(), sizes


def archive(pickle_bytes, sizes):
    """A model.pt as torch.save lays it out (float32 storages of zeros)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", b"little")
        for key, numel in sizes.items():
            z.writestr(f"archive/data/{key}", b"\0" * (4 * numel))
        z.writestr("archive/version", b"3\n")
    return out.getvalue()


def blob(n):
    return b"B" + struct.pack("<I", n) + b"\x07" * n


def text(s):
    return b"X" + struct.pack("<I", len(s)) + s.encode()


TENSOR = (b"ctorch._utils\n_rebuild_tensor_v2\n((" + text("storage") + b"ctorch\nFloatStorage\n"
          + text("0") + text("cpu") + b"J\x10\x00\x00\x00tQK\x00J\x10\x00\x00\x00\x85K\x01\x85"
          + b"\x89ccollections\nOrderedDict\n)Rt")
ATTACKS = {
    "bytes_attrs": b"cmod\nM\n)\x81}(" + b"".join(text(f"a{i}") + blob(40) for i in range(20)) + b"ub",
    "floats": b"(" + b"G\x3f\xf0\x00\x00\x00\x00\x00\x00" * 50 + b"t",
    "dict_numbers": b"}(" + b"M\x01\x02M\x03\x04" * 40 + b"u",
    "wide_ints": b"(" + b"\x8a\x05\x01\x02\x03\x04\x05" * 30 + b"l",
    "huge_int": b"\x8b\x00\x01\x00\x00" + b"\x01" * 256,
    "numpy": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\nK\x00\x85C\x01btR(K\x01"
             + b"M\xc4\x09\x85cnumpy\ndtype\n(X\x02\x00\x00\x00f4K\x00K\x01tR\x89" + blob(64) + b"tb",
    "set_class_state": b"cproctor_export\nset_class_state\ncmod\nC\n}" + text("t") + blob(64) + b"s\x86R0N",
    "newobj_args": b"cmod\nC\n" + blob(64) + b"\x85\x81",
    "newobj_ex": b"cmod\nC\n" + blob(8) + b"\x85}" + text("k") + b"K\x01s\x92",
    "reduce_obj": b"cmod\nC\n)\x81" + blob(64) + b"\x85R",
    "stack_leftover": blob(64) + b"N",
    "popped": b"cbuiltins\nsetattr\n(cmod\nC\n" + text("w") + blob(64) + b"tR0N",
    "build_non_obj": b")" + blob(64) + b"bN",
    "dict_args": b"cbuiltins\ndict\n]" + blob(64) + b"\x86R",
    "set_of_list": b"cbuiltins\nset\n](K\x01K\x02e\x85R",
    "memo_refs": b"".join(bytes([67, 1, i, 113, i, 48]) for i in range(16)) + b"]("
                 + b"".join(bytes([104, i % 16]) for i in range(64)) + b"e",
    "param_state": b"ctorch._utils\n_rebuild_parameter_with_state\n(" + TENSOR
                   + b"R\x88ccollections\nOrderedDict\n)R}" + text("blob") + blob(16) + b"stR",
    "from_type_v2": b"ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._utils\n_rebuild_tensor_v2\n"
                    + b"cmod\nT\n" + TENSOR[TENSOR.index(b"(("):] + b"}" + text("s") + blob(8) + b"stR",
    "make_function": b"cproctor_export\nmake_function\nq\x00\x30" + blob(32) + b"q\x01\x30]("
                     + b"h\x00(h\x01X\x01\x00\x00\x00mX\x01\x00\x00\x00fX\x01\x00\x00\x00fK\x00tR" * 2
                     + b"e",
    "cycle": b"]2a0}q\x00Kah\x00s",
}


def write(out, seeds):
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {out}")


def main(pickles, archives=None):
    with_attrs = sequential(linear(384, 128))
    with_attrs.__dict__.update(means=b"\x01" * 300, table=[1, 2.5, 3] * 20,
                               cfg={"a": 1, "b": (2, 3)}, big=2**300, code=marshal.dumps(main.__code__))
    models = {
        "mlp": sequential(linear(384, 384), relu(), linear(384, 128)),
        "bn_mlp": sequential(linear(384, 256), batchnorm(256), relu(), linear(256, 128)),
        "deep_res": sequential(*[sequential(linear(64, 64), batchnorm(64), relu()) for _ in range(24)]),
        "attrs": with_attrs,
    }
    seeds = {name + ".pkl": torch_save(m)[0] for name, m in models.items()}
    seeds.update({name + ".pkl": b"\x80\x02" + body + b"." for name, body in ATTACKS.items()})
    write(pickles, seeds)
    if archives:
        small = {
            "mlp": sequential(linear(8, 4), relu(), linear(4, 2)),
            "bn": sequential(linear(8, 4), batchnorm(4), relu(), linear(4, 2)),
        }
        zips = {name + ".pt": archive(*torch_save(m)) for name, m in small.items()}
        zips.update({name + ".pt": archive(b"\x80\x02" + body + b".", {"0": 16})
                     for name, body in ATTACKS.items()})
        write(archives, zips)


if __name__ == "__main__":
    main(*sys.argv[1:3])
