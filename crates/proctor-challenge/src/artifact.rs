//! Trusted parameter counting from an exported module (`torch.save(model)`), without
//! executing any of the participant's code.
//!
//! The archive's `data.pkl` is read by a restricted pickle machine: torch's own tensor
//! rebuild functions are understood, every other class is only recorded by name, and
//! storages come from the archive's persistent ids. Every stored tensor element counts
//! (trainable or frozen parameters, buffers, any other tensor), except the running
//! statistics of `torch.nn` normalization layers and per-feature statistics (1-D module
//! buffers up to a per-model allowance, e.g. an input mean and standard deviation, see
//! [`Allowance`]). Values kept in the pickled structure itself count too (bytes of
//! strings, bytes objects and huge ints, numbers per 32 bits, items of lists and tuples),
//! wherever the pickle leaves them (reachable from the root or not: the real unpickler
//! may keep anything it built), past per-model allowances for what a module tree's names
//! and settings need, and a pickled structure larger than [`PICKLE_ALLOWANCE`] is
//! refused: capacity cannot hide in lists, bytes or strings, nor be multiplied by
//! spreading it over many objects. Marshalled code of classes defined inside `solve()`
//! counts only past 16 KiB (its module-level twin keeps its code outside the archive, but
//! code constants could carry data).
//! Finally the archive is rewritten to hold exactly what was counted, so that inference
//! cannot read anything else from it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Largest accepted pickled structure (the module tree without tensor data).
pub const PICKLE_ALLOWANCE: u64 = 1 << 20;
/// Deepest nesting of containers (lists, tuples, dicts, objects) in the pickle: a module
/// tree nests three per level of submodules, while one opcode per level could otherwise
/// nest as deep as the pickle is long (a million levels in 1 MiB).
pub const MAX_NESTING: u32 = 4096;
/// Bytes of strings and bytes objects a module tree may keep uncounted: names of
/// attributes, submodules and classes (real torch pickles: 368 bytes for an MLP, 842 for
/// a 260-module residual network, 1,468 with a class defined inside `solve()`).
const FREE_LITERAL_BYTES: u64 = 4096;
/// Numbers (per 32 bits), items of lists, tuples and constructor calls, and dict values
/// that pick among values built once, a module tree may keep uncounted: its settings
/// (sizes, flags, eps, momentum). Real torch pickles hold 9 (an MLP) to 1,160 (a
/// 260-module residual network).
const FREE_NUMBERS: u64 = 2048;
/// Bytes of marshalled code (of classes and functions defined inside `solve()`, exported
/// by value) kept uncounted: a model class's methods take a few KB.
const FREE_CODE_BYTES: u64 = 16 << 10;
/// Largest accepted artifact file.
pub const MAX_ARTIFACT_BYTES: u64 = 2 << 30;
/// Running statistics are free only while they stay below this fraction of the count
/// (honest models use far less than 1/8: a BatchNorm layer has 2 statistics per feature).
const EXEMPT_FRACTION: u64 = 8;
/// Items the pickle may build and the walk over it may visit, in total (memo copies,
/// reduce arguments, entries of a dict shared by many modules included): the byte cap
/// alone does not bound work, since one opcode can copy a whole list.
const WORK_BUDGET: u64 = 4_000_000;
/// Work between two looks at the clock.
const WORK_PER_CLOCK_CHECK: u64 = 4096;
/// Wall time counting one artifact may take (parsing, walking and rewriting it): a module
/// tree counts in milliseconds and a storage copies at disk speed, so this only stops
/// what the work budget lets through on a slow or loaded machine, before it holds one of
/// the server's blocking threads for long.
pub const COUNT_TIME_BUDGET: Duration = Duration::from_secs(10);
/// Most archive entries: a module's archive holds one per storage and four more; the
/// directory of a 2 GiB file of empty entries would take gigabytes to index.
const MAX_ENTRIES: u64 = 100_000;
/// Stack of the counting thread. Nesting is refused past [`MAX_NESTING`] as it is built,
/// and mutable containers are emptied one by one at the end, so dropping the deepest
/// value needs a few frames per level; this (virtual, touched only as deep as it goes)
/// stack keeps that far from a tokio worker's.
const COUNT_STACK_BYTES: usize = 512 << 20;

/// The torch.nn normalization layers whose running statistics are not counted.
const NORM_CLASSES: &[&str] = &[
    "torch.nn.modules.batchnorm.BatchNorm1d",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.batchnorm.BatchNorm3d",
    "torch.nn.modules.batchnorm.SyncBatchNorm",
    "torch.nn.modules.instancenorm.InstanceNorm1d",
    "torch.nn.modules.instancenorm.InstanceNorm2d",
    "torch.nn.modules.instancenorm.InstanceNorm3d",
];

/// Why an artifact cannot be counted (the submission is `rejected`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// Not a torch zip archive.
    #[error("the exported model is not a torch.save archive: {0}")]
    NotArchive(String),
    /// The pickled structure is over the allowance.
    #[error("the exported module's pickled structure is {size} bytes, over the {max}-byte allowance: keep weights in tensors (parameters or buffers), not in Python lists, bytes or strings")]
    PickleTooLarge {
        /// Its size.
        size: u64,
        /// The allowance.
        max: u64,
    },
    /// The pickle holds something the counter does not accept.
    #[error("the exported module cannot be counted: {0}")]
    Unsupported(String),
    /// Counting took longer than its time budget.
    #[error("the exported module could not be counted within {} s (a module tree counts in milliseconds): keep weights in tensors and the module structure plain", budget.as_secs_f64())]
    OverTime {
        /// The budget.
        budget: Duration,
    },
}

type R<T> = Result<T, ArtifactError>;

fn bad<T>(msg: impl Into<String>) -> R<T> {
    Err(ArtifactError::Unsupported(msg.into()))
}

/// What the counter found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Counted elements: every stored tensor element (wider-than-32-bit dtypes count per
    /// 32 bits), less the exempt running statistics.
    pub params: u64,
    /// The original rule: elements of parameters with `requires_grad`.
    pub params_trainable: u64,
    /// Elements of parameters with `requires_grad` off.
    pub frozen: u64,
    /// Elements of module buffers (running statistics excluded).
    pub buffers: u64,
    /// Elements of tensors kept elsewhere (attributes, lists, dicts).
    pub other: u64,
    /// Running statistics of torch.nn normalization layers, not counted.
    pub exempt_running_stats: u64,
    /// Per-feature statistics (non-trainable 1-D module buffers within the allowance),
    /// not counted.
    #[serde(default)]
    pub exempt_feature_stats: u64,
    /// Values kept in the pickled structure itself (bytes of strings and bytes objects,
    /// numbers) beyond what a module tree's names and settings need, counted 1 per byte
    /// or number (like int8 tensor elements); included in `other` and `params`.
    #[serde(default)]
    pub pickled_values: u64,
    /// Distinct storages in the archive.
    pub storages: u64,
    /// Size of the pickled structure.
    pub pickle_bytes: u64,
    /// Classes the module tree is made of.
    pub classes: Vec<String>,
    /// Why `params` and `params_trainable` differ, in words.
    pub note: String,
}

#[derive(Debug)]
struct StorageInfo {
    itemsize: u64,
    numel: u64,
}

/// What is exempt besides normalization running statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowance {
    /// Elements of non-trainable 1-D module buffers (per-feature statistics such as an
    /// input mean and standard deviation: 2 × input_dim) that are not counted. When the
    /// model's 1-D buffers total more, they all count: past a mean and a deviation per
    /// feature, 1-D buffers are capacity (a weight matrix cut in rows, say).
    pub feature_stats: u64,
}

#[derive(Debug)]
struct Tensor {
    key: String,
    offset: u64,
    numel: u64,
    dims: usize,
    param: bool,
    requires_grad: bool,
}

#[derive(Debug, Default)]
struct Obj {
    class: String,
    state: Vec<V>,
    items: Vec<V>,
}

#[derive(Debug, Clone)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(Rc<str>),
    /// A bytes or bytearray literal, or an integer wider than 64 bits: its length in
    /// bytes (the Rc is its identity).
    Bytes(Rc<u64>),
    List(Rc<RefCell<Vec<V>>>),
    Tuple(Rc<Vec<V>>),
    Dict(Rc<RefCell<Vec<(V, V)>>>),
    Global(Rc<str>),
    Obj(Rc<RefCell<Obj>>),
    Tensor(Rc<Tensor>),
    Storage(Rc<str>),
    Mark,
}

fn itemsize(storage_type: &str) -> Option<u64> {
    Some(match storage_type.strip_prefix("torch.")? {
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "ComplexDoubleStorage" => 16,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "ByteStorage"
        | "CharStorage"
        | "BoolStorage"
        | "QInt8Storage"
        | "QUInt8Storage"
        | "Float8_e5m2Storage"
        | "Float8_e4m3fnStorage" => 1,
        _ => return None,
    })
}

/// Counting units of a storage: elements, with wider-than-32-bit dtypes counted per 32
/// bits, so that packing values into float64 or complex buys nothing.
fn units(s: &StorageInfo) -> u64 {
    s.numel.saturating_mul((s.itemsize / 4).max(1))
}

/// The wall-time budget of one count, started when counting starts.
#[derive(Debug, Clone, Copy)]
struct Clock {
    started: Instant,
    budget: Duration,
}

impl Clock {
    fn start(budget: Duration) -> Clock {
        Clock {
            started: Instant::now(),
            budget,
        }
    }
    fn check(&self) -> R<()> {
        match self.started.elapsed() > self.budget {
            true => Err(ArtifactError::OverTime {
                budget: self.budget,
            }),
            false => Ok(()),
        }
    }
}

/// Work done so far on one pickle (building it, then walking it), against
/// [`WORK_BUDGET`] and the clock.
struct Meter {
    work: u64,
    next_clock_check: u64,
    clock: Clock,
}

impl Meter {
    fn new(clock: Clock) -> Meter {
        Meter {
            work: 0,
            next_clock_check: 0,
            clock,
        }
    }
    fn charge(&mut self, items: usize) -> R<()> {
        self.work = self.work.saturating_add(items as u64);
        if self.work > WORK_BUDGET {
            return bad(format!(
                "the pickle builds or links more than {WORK_BUDGET} items: not a plain module tree"
            ));
        }
        if self.work >= self.next_clock_check {
            self.next_clock_check = self.work + WORK_PER_CLOCK_CHECK;
            self.clock.check()?;
        }
        Ok(())
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: HashMap<u32, V>,
    storages: BTreeMap<String, StorageInfo>,
    classes: std::collections::BTreeSet<String>,
    meter: Meter,
    /// Marshalled code of functions exported by value (each counted once), and its bytes.
    code: HashSet<usize>,
    code_bytes: u64,
    /// Every mutable container built: a pickle can make them reference each other (a
    /// list appended to itself), and such Rc cycles would leak on every submission.
    containers: Vec<V>,
    /// Values the pickle built and then set aside (popped, left on the stack, passed
    /// as arguments the tensor rebuilds do not keep, state set on a non-object): the
    /// real unpickler may still keep them (a reduce with side effects, a class attribute
    /// set by `set_class_state` then popped, a parameter's state), so they are walked
    /// and counted like the root.
    dropped: Vec<V>,
    /// Nesting depth of each container, as it was when something was put in it. A list
    /// that grows after it was nested can hide depth from its parents, but mutable
    /// containers are emptied one by one at the end; tuples, whose drop recurses, are
    /// immutable and measured exactly.
    depth: HashMap<usize, u32>,
}

impl Drop for Machine<'_> {
    /// Empties every mutable container, which breaks every cycle (immutable tuples can
    /// only hold what existed before them).
    fn drop(&mut self) {
        for c in self.containers.drain(..) {
            match c {
                V::List(l) => l.borrow_mut().clear(),
                V::Dict(d) => d.borrow_mut().clear(),
                V::Obj(o) => {
                    let mut o = o.borrow_mut();
                    o.state.clear();
                    o.items.clear();
                }
                _ => {}
            }
        }
    }
}

impl<'a> Machine<'a> {
    /// Registers a mutable container built with `v`'s contents.
    fn container(&mut self, v: V) -> R<V> {
        let id = container_id(&v).expect("a container");
        self.depth.remove(&id);
        match &v {
            V::List(l) => self.nest(&v, &l.borrow())?,
            V::Obj(o) => self.nest(&v, &o.borrow().items)?,
            _ => {}
        }
        self.containers.push(v.clone());
        Ok(v)
    }

    /// Records that `parent` holds `children`, refusing nesting past [`MAX_NESTING`].
    fn nest(&mut self, parent: &V, children: &[V]) -> R<()> {
        let below = children
            .iter()
            .filter_map(|c| container_id(c).map(|id| self.depth.get(&id).copied().unwrap_or(1)))
            .max()
            .unwrap_or(0);
        if below >= MAX_NESTING {
            return bad(format!(
                "the pickle nests containers more than {MAX_NESTING} levels deep: not a plain module tree"
            ));
        }
        let id = container_id(parent).expect("a container");
        let depth = self.depth.entry(id).or_insert(1);
        *depth = (*depth).max(below + 1);
        Ok(())
    }

    /// A new tuple of `items`, within [`MAX_NESTING`].
    fn tuple(&mut self, items: Vec<V>) -> R<V> {
        let t = V::Tuple(Rc::new(items));
        self.depth.remove(&container_id(&t).expect("a container"));
        if let V::Tuple(items) = &t {
            self.nest(&t, items)?;
        }
        Ok(t)
    }
    fn charge(&mut self, items: usize) -> R<()> {
        self.meter.charge(items)
    }
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        // A length read from the pickle can be anything up to u64::MAX: no overflow.
        if n > self.data.len() - self.pos {
            return bad("truncated pickle");
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| ArtifactError::Unsupported("truncated pickle".into()))?;
        self.pos += end + 1;
        String::from_utf8(rest[..end].to_vec())
            .map_err(|_| ArtifactError::Unsupported("non-UTF-8 global name".into()))
    }
    fn pop(&mut self) -> R<V> {
        match self.stack.pop() {
            Some(V::Mark) | None => bad("pickle stack underflow"),
            Some(v) => Ok(v),
        }
    }
    fn pop_mark(&mut self) -> R<Vec<V>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, V::Mark))
            .ok_or_else(|| ArtifactError::Unsupported("pickle MARK missing".into()))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        self.charge(items.len())?;
        Ok(items)
    }
    fn str(&mut self, n: usize) -> R<V> {
        let b = self.take(n)?;
        Ok(V::Str(Rc::from(String::from_utf8_lossy(b).as_ref())))
    }
    fn memoize(&mut self, idx: u32) -> R<()> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| ArtifactError::Unsupported("memo of an empty stack".into()))?;
        self.memo.insert(idx, top);
        Ok(())
    }
    fn get(&mut self, idx: u32) -> R<()> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| ArtifactError::Unsupported(format!("memo {idx} missing")))?;
        self.stack.push(v);
        Ok(())
    }

    fn run(&mut self) -> R<V> {
        loop {
            self.charge(1)?;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                } // PROTO
                0x95 => {
                    self.u64()?;
                } // FRAME
                b'.' => {
                    let root = self.pop()?;
                    let rest = std::mem::take(&mut self.stack);
                    self.dropped
                        .extend(rest.into_iter().filter(|v| !matches!(v, V::Mark)));
                    return Ok(root);
                }
                b'(' => self.stack.push(V::Mark),
                b'0' => {
                    let v = self.pop()?;
                    self.dropped.push(v);
                }
                b'1' => {
                    let items = self.pop_mark()?;
                    self.dropped.extend(items);
                }
                b'2' => {
                    let v = self.pop()?;
                    self.stack.push(v.clone());
                    self.stack.push(v);
                }
                b'N' => self.stack.push(V::None),
                0x88 => self.stack.push(V::Bool(true)),
                0x89 => self.stack.push(V::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(V::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(V::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(V::Int(v as i64))
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = long(b);
                    self.stack.push(v)
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let v = long(b);
                    self.stack.push(v)
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(V::Float)
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.str(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.str(n)?;
                    self.stack.push(v)
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let v = self.str(n)?;
                    self.stack.push(v)
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.str(n)?;
                    self.stack.push(v)
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.str(n)?;
                    self.stack.push(v)
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(V::Bytes(Rc::new(n as u64)))
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(V::Bytes(Rc::new(n as u64)))
                }
                0x8e | 0x96 => {
                    let n = self.u64()? as usize;
                    self.take(n)?;
                    self.stack.push(V::Bytes(Rc::new(n as u64)))
                }
                b']' => {
                    let v = self.container(V::List(Rc::default()))?;
                    self.stack.push(v)
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.container(V::List(Rc::new(RefCell::new(items))))?;
                    self.stack.push(v)
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.pop()?;
                    self.append(&target, vec![v])?;
                    self.stack.push(target);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.pop()?;
                    self.append(&target, items)?;
                    self.stack.push(target);
                }
                b')' => {
                    let t = self.tuple(Vec::new())?;
                    self.stack.push(t)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.tuple(items)?;
                    self.stack.push(t)
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return bad("pickle stack underflow");
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.tuple(items)?;
                    self.stack.push(t)
                }
                b'}' => {
                    let v = self.container(V::Dict(Rc::default()))?;
                    self.stack.push(v)
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.container(V::Dict(Rc::default()))?;
                    self.set_items(&dict, items)?;
                    self.stack.push(dict)
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.pop()?;
                    self.set_items(&target, vec![k, v])?;
                    self.stack.push(target);
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.pop()?;
                    self.set_items(&target, items)?;
                    self.stack.push(target);
                }
                0x8f => {
                    let v = self.container(V::List(Rc::default()))?; // EMPTY_SET
                    self.stack.push(v)
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.pop()?;
                    self.append(&target, items)?;
                    self.stack.push(target);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.container(V::List(Rc::new(RefCell::new(items))))?;
                    self.stack.push(v)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(format!("{module}.{name}"));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (V::Str(m), V::Str(n)) => self.global(format!("{m}.{n}")),
                        _ => return bad("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v)
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.new_obj(cls, spread(args))?;
                    self.stack.push(v)
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let mut items = spread(args);
                    items.push(kwargs);
                    let v = self.new_obj(cls, items)?;
                    self.stack.push(v)
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.pop()?;
                    if matches!(target, V::Obj(_) | V::Dict(_)) {
                        self.nest(&target, std::slice::from_ref(&state))?;
                    }
                    if let V::Obj(o) = &target {
                        o.borrow_mut().state.push(state);
                    } else if let V::Dict(d) = &target {
                        d.borrow_mut().push((V::Str(Rc::from("__state__")), state));
                    } else {
                        self.dropped.push(state);
                    }
                    self.stack.push(target)
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.stack.push(v)
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.get(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.get(i)?
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memoize(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memoize(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memoize(i)?
                }
                other => {
                    return bad(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    ))
                }
            }
        }
    }

    fn global(&mut self, name: String) {
        let name = name.replace("__builtin__.", "builtins.");
        self.stack.push(V::Global(Rc::from(name.as_str())));
    }

    fn append(&mut self, target: &V, items: Vec<V>) -> R<()> {
        if matches!(target, V::List(_) | V::Obj(_)) {
            self.nest(target, &items)?;
        }
        match target {
            V::List(l) => l.borrow_mut().extend(items),
            V::Obj(o) => o.borrow_mut().items.extend(items),
            _ => return bad("APPEND to a non-list"),
        }
        Ok(())
    }

    fn set_items(&mut self, target: &V, items: Vec<V>) -> R<()> {
        if !items.len().is_multiple_of(2) {
            return bad("odd number of dict items");
        }
        if matches!(target, V::Dict(_) | V::Obj(_)) {
            self.nest(target, &items)?;
        }
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match target {
                V::Dict(d) => d.borrow_mut().push((k, v)),
                V::Obj(o) => o.borrow_mut().items.extend([k, v]),
                _ => return bad("SETITEM on a non-dict"),
            }
        }
        Ok(())
    }

    fn persistent(&mut self, pid: V) -> R<V> {
        let V::Tuple(t) = pid else {
            return bad("persistent id is not a tuple");
        };
        match t.as_slice() {
            [V::Str(kind), V::Global(ty), V::Str(key), V::Str(_location), V::Int(numel)]
                if kind.as_ref() == "storage" =>
            {
                let itemsize = itemsize(ty)
                    .ok_or_else(|| ArtifactError::Unsupported(format!("storage type {ty}")))?;
                if *numel < 0 || key.is_empty() || key.contains('/') || key.contains("..") {
                    return bad("malformed storage id");
                }
                let numel = *numel as u64;
                match self.storages.get(key.as_ref()) {
                    Some(s) if s.numel != numel || s.itemsize != itemsize => {
                        return bad(format!("storage {key} declared with two sizes"))
                    }
                    Some(_) => {}
                    None => {
                        self.storages
                            .insert(key.to_string(), StorageInfo { itemsize, numel });
                    }
                }
                Ok(V::Storage(key.clone()))
            }
            _ => bad("unsupported persistent id"),
        }
    }

    /// An object of `cls`; its constructor's arguments are kept as its items (a custom
    /// `__new__` or a reduce function can keep them).
    fn new_obj(&mut self, cls: V, args: Vec<V>) -> R<V> {
        let class = match cls {
            V::Global(g) => g.to_string(),
            V::Obj(o) => local_class_name(&o.borrow()).unwrap_or_else(|| "<dynamic>".into()),
            _ => "<dynamic>".into(),
        };
        self.classes.insert(class.clone());
        self.container(V::Obj(Rc::new(RefCell::new(Obj {
            class,
            items: args,
            ..Obj::default()
        }))))
    }

    fn reduce(&mut self, func: V, args: V) -> R<V> {
        let V::Global(name) = &func else {
            return self.new_obj(func, spread(args));
        };
        let args: Vec<V> = match &args {
            V::Tuple(t) => t.as_ref().clone(),
            _ => return bad(format!("arguments of {name} are not a tuple")),
        };
        self.charge(args.len())?;
        match name.as_ref() {
            "torch._utils._rebuild_tensor" | "torch._utils._rebuild_tensor_v2" => {
                let (
                    Some(V::Storage(key)),
                    Some(V::Int(offset)),
                    Some(V::Tuple(size)),
                    Some(V::Tuple(stride)),
                ) = (args.first(), args.get(1), args.get(2), args.get(3))
                else {
                    return bad("malformed tensor");
                };
                let requires_grad = matches!(args.get(4), Some(V::Bool(true)));
                // Backward hooks and metadata: torch.load keeps them on the tensor.
                self.dropped.extend(args.iter().skip(5).cloned());
                let dims = |t: &[V]| -> R<Vec<u64>> {
                    t.iter()
                        .map(|d| match d {
                            V::Int(i) if *i >= 0 => Ok(*i as u64),
                            _ => bad("malformed tensor shape"),
                        })
                        .collect()
                };
                let (size, stride) = (dims(size)?, dims(stride)?);
                if size.len() != stride.len() || *offset < 0 {
                    return bad("malformed tensor shape");
                }
                let numel = size.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
                let Some(numel) = numel else {
                    return bad("tensor too large");
                };
                let storage = &self.storages[key.as_ref()];
                if numel > 0 {
                    let extent = size
                        .iter()
                        .zip(&stride)
                        .map(|(d, s)| (d - 1).saturating_mul(*s))
                        .fold(*offset as u64, |a, b| a.saturating_add(b));
                    if extent >= storage.numel {
                        return bad("tensor reaches past its storage");
                    }
                }
                Ok(V::Tensor(Rc::new(Tensor {
                    key: key.to_string(),
                    offset: *offset as u64,
                    numel,
                    dims: size.len(),
                    param: false,
                    requires_grad,
                })))
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                let Some(V::Tensor(t)) = args.first() else {
                    return bad("malformed parameter");
                };
                let requires_grad = matches!(args.get(1), Some(V::Bool(true)));
                // Hooks and state (any attributes) are kept on the parameter.
                self.dropped.extend(args.iter().skip(2).cloned());
                Ok(V::Tensor(Rc::new(Tensor {
                    key: t.key.clone(),
                    offset: t.offset,
                    numel: t.numel,
                    dims: t.dims,
                    param: true,
                    requires_grad,
                })))
            }
            "torch._tensor._rebuild_from_type_v2" => {
                // (func, type, args, state): a tensor subclass around a rebuilt tensor,
                // the state set as its attributes.
                self.dropped.extend(args.iter().skip(3).cloned());
                match (args.first(), args.get(2)) {
                    (Some(f), Some(a)) => self.reduce(f.clone(), a.clone()),
                    _ => bad("malformed tensor subclass"),
                }
            }
            "collections.OrderedDict" | "builtins.dict" => {
                let dict = self.container(V::Dict(Rc::default()))?;
                // What is not a list of pairs is still built by the real call (or makes
                // it fail): it is walked as well.
                self.dropped.extend(args.iter().skip(1).cloned());
                match args.first() {
                    Some(V::List(pairs)) => {
                        for pair in pairs.borrow().iter() {
                            match pair {
                                V::Tuple(kv) if kv.len() == 2 => {
                                    self.set_items(&dict, vec![kv[0].clone(), kv[1].clone()])?
                                }
                                other => self.dropped.push(other.clone()),
                            }
                        }
                    }
                    Some(other) => self.dropped.push(other.clone()),
                    None => {}
                }
                Ok(dict)
            }
            "builtins.set" | "builtins.frozenset" | "builtins.list" => {
                self.dropped.extend(args.iter().skip(1).cloned());
                let items = match args.first() {
                    Some(V::List(l)) => l.borrow().clone(),
                    Some(other) => {
                        self.dropped.push(other.clone());
                        Vec::new()
                    }
                    None => Vec::new(),
                };
                self.charge(items.len())?;
                self.container(V::List(Rc::new(RefCell::new(items))))
            }
            n if n.starts_with("torch._utils._rebuild")
                || n.starts_with("torch._tensor._rebuild") =>
            {
                bad(format!(
                    "unsupported tensor kind ({n}): use dense CPU tensors"
                ))
            }
            _ => {
                let mut args = args;
                if name.as_ref() == "proctor_export.make_function" {
                    // The marshalled code of a function defined inside solve(): source
                    // (its module-level twin is not in the pickle at all), free up to
                    // FREE_CODE_BYTES in all, since its constants could carry data.
                    if let Some(code @ V::Bytes(_)) = args.first_mut() {
                        if let V::Bytes(len) = std::mem::replace(code, V::None) {
                            if self.code.insert(Rc::as_ptr(&len) as usize) {
                                self.code_bytes += *len;
                            }
                        }
                    }
                }
                // Arguments are kept so that what is passed to a constructor stays reachable.
                self.new_obj(func, args)
            }
        }
    }
}

/// The items of an argument tuple (anything else as one item).
fn spread(args: V) -> Vec<V> {
    match args {
        V::Tuple(t) => t.as_ref().clone(),
        other => vec![other],
    }
}

/// A `LONG1`/`LONG4` integer (little-endian two's complement). Wider than 64 bits its
/// bytes are data (one 60 KB integer could carry a weight matrix): counted like a bytes
/// literal of that length.
fn long(b: &[u8]) -> V {
    match b.len() {
        0 => V::Int(0),
        n @ 1..=8 => {
            let mut buf = if b[n - 1] & 0x80 != 0 {
                [0xff; 8]
            } else {
                [0; 8]
            };
            buf[..n].copy_from_slice(b);
            V::Int(i64::from_le_bytes(buf))
        }
        n => V::Bytes(Rc::new(n as u64)),
    }
}

/// The name of a class exported by value (defined inside `solve()`, see
/// `challenge_export.py`), prefixed so that it can never pass for a torch.nn class.
fn local_class_name(made: &Obj) -> Option<String> {
    if made.class != "proctor_export.make_class" {
        return None;
    }
    match (made.items.get(3), made.items.get(4)) {
        (Some(V::Str(module)), Some(V::Str(qualname))) => {
            Some(format!("local class {module}.{qualname}"))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Trainable,
    Frozen,
    Buffer,
    Other,
}

/// Walks the graph reachable from the root, classifying every tensor.
#[derive(Default)]
struct Walk {
    seen: HashSet<usize>,
    /// Reachable tensors with their (best) role.
    tensors: HashMap<usize, (Rc<Tensor>, Role)>,
    /// Tensors that are running statistics of a torch.nn normalization layer.
    stats: HashSet<usize>,
    /// Non-parameter 1-D module buffers (candidate per-feature statistics).
    features: HashSet<usize>,
    /// Storages reachable raw (not through a tensor).
    raw: HashSet<String>,
    /// Trainable parameters found in `_parameters` dicts (the original rule).
    trainable: HashMap<usize, u64>,
    /// Strings and bytes reached, each counted once.
    literals: HashSet<usize>,
    /// Bytes of the distinct strings and bytes literals reached.
    literal_bytes: u64,
    /// Numbers (ints, floats, bools) reached, each occurrence in a container, per 32
    /// bits; the other items of lists, tuples, sets and constructor calls; dict values
    /// that pick among values built once.
    numbers: u64,
    /// How often each container or tensor is a dict value.
    dict_refs: HashMap<usize, u32>,
}

/// The identity of a container (what the walk enters once).
fn container_id(v: &V) -> Option<usize> {
    Some(match v {
        V::List(l) => Rc::as_ptr(l) as usize,
        V::Tuple(t) => Rc::as_ptr(t) as *const u8 as usize,
        V::Dict(d) => Rc::as_ptr(d) as usize,
        V::Obj(o) => Rc::as_ptr(o) as usize,
        _ => return None,
    })
}

fn tensor_id(v: &V) -> Option<usize> {
    match v {
        V::Tensor(t) => Some(Rc::as_ptr(t) as usize),
        _ => None,
    }
}

fn dict_get<'v>(d: &'v [(V, V)], key: &str) -> Option<&'v V> {
    d.iter()
        .find(|(k, _)| matches!(k, V::Str(s) if s.as_ref() == key))
        .map(|(_, v)| v)
}

impl Walk {
    fn tensor(&mut self, t: &Rc<Tensor>, role: Role) {
        let id = Rc::as_ptr(t) as usize;
        let entry = self.tensors.entry(id).or_insert((t.clone(), role));
        entry.1 = entry.1.min(role);
    }

    /// Every value reachable from `root`, with an explicit stack: nesting depth is the
    /// participant's choice and must not become recursion. Each link followed is work:
    /// values the pickle built once can be linked from many places.
    fn visit(&mut self, root: &V, meter: &mut Meter) -> R<()> {
        let mut todo = vec![root.clone()];
        while let Some(v) = todo.pop() {
            meter.charge(1)?;
            if self.enter(&v) {
                self.children(&v, &mut todo, meter)?;
            }
        }
        Ok(())
    }

    /// Records a leaf; true for a container not seen before.
    fn enter(&mut self, v: &V) -> bool {
        if let Some(id) = container_id(v) {
            return self.seen.insert(id);
        }
        match v {
            V::Tensor(t) => {
                let role = if t.param && t.requires_grad {
                    Role::Trainable
                } else if t.param {
                    Role::Frozen
                } else {
                    Role::Other
                };
                self.tensor(t, role);
            }
            V::Storage(k) => {
                self.raw.insert(k.to_string());
            }
            // Strings and bytes count once per object, however often they are linked.
            V::Str(text) if self.literals.insert(Rc::as_ptr(text) as *const u8 as usize) => {
                self.literal_bytes += text.len() as u64
            }
            V::Bytes(len) if self.literals.insert(Rc::as_ptr(len) as usize) => {
                self.literal_bytes += **len
            }
            // Per 32 bits, as tensor elements: a float64 could carry two float32 weights.
            V::Int(i) if i32::try_from(*i).is_err() => self.numbers += 2,
            V::Float => self.numbers += 2,
            V::Int(_) | V::Bool(_) => self.numbers += 1,
            _ => {}
        }
        false
    }

    fn children(&mut self, v: &V, todo: &mut Vec<V>, meter: &mut Meter) -> R<()> {
        match v {
            V::List(l) => self.items(&l.borrow(), todo),
            V::Tuple(t) => self.items(t, todo),
            V::Dict(d) => {
                for (k, x) in d.borrow().iter() {
                    self.dict_value(x);
                    todo.push(k.clone());
                    todo.push(x.clone());
                }
            }
            V::Obj(o) => {
                let o = o.borrow();
                for state in &o.state {
                    if let V::Dict(d) = state {
                        self.module_state(&o.class, &d.borrow(), meter)?;
                    }
                    todo.push(state.clone());
                }
                self.items(&o.items, todo);
            }
            _ => {}
        }
        Ok(())
    }

    /// A dict value that picks one of the values built once (a string, a global, a
    /// container or tensor referenced again) counts 1, like a list item: `{i: memo[j]}`
    /// would carry 8 bits per entry. A module's own fresh containers (its hook dicts) and
    /// numbers (counted when entered) add nothing here.
    fn dict_value(&mut self, v: &V) {
        let again = match container_id(v).or_else(|| tensor_id(v)) {
            Some(id) => {
                let n = self.dict_refs.entry(id).or_insert(0);
                *n += 1;
                *n > 1
            }
            None => false,
        };
        if again || matches!(v, V::Str(_) | V::Bytes(_) | V::Global(_)) {
            self.numbers += 1;
        }
    }

    /// Items of a list, tuple, set or constructor call count 1 each (numbers by their
    /// width when entered): one item can pick one of many memoized values, 8 bits for a
    /// 2-byte memo reference, so a list of references is data as much as a list of ints.
    /// A module tree keeps its structure in dicts, whose keys must differ (and count).
    fn items(&mut self, items: &[V], todo: &mut Vec<V>) {
        for item in items {
            if !matches!(item, V::Int(_) | V::Float | V::Bool(_)) {
                self.numbers += 1;
            }
            todo.push(item.clone());
        }
    }

    /// Roles from a module's `__dict__`: `_parameters`, `_buffers`, normalization stats.
    /// Every entry read is work: one state dict can be shared by thousands of modules.
    fn module_state(&mut self, class: &str, state: &[(V, V)], meter: &mut Meter) -> R<()> {
        meter.charge(state.len())?;
        if let Some(V::Dict(params)) = dict_get(state, "_parameters") {
            meter.charge(params.borrow().len())?;
            for (_, p) in params.borrow().iter() {
                if let V::Tensor(t) = p {
                    if t.param && t.requires_grad {
                        self.trainable.insert(Rc::as_ptr(t) as usize, t.numel);
                    }
                }
            }
        }
        if let Some(V::Dict(buffers)) = dict_get(state, "_buffers") {
            meter.charge(buffers.borrow().len())?;
            let features = match dict_get(state, "num_features") {
                Some(V::Int(n)) if *n > 0 => Some(*n as u64),
                _ => None,
            };
            let norm = NORM_CLASSES.contains(&class);
            for (name, b) in buffers.borrow().iter() {
                let V::Tensor(t) = b else { continue };
                self.tensor(t, Role::Buffer);
                let V::Str(name) = name else { continue };
                let expected = match name.as_ref() {
                    "running_mean" | "running_var" => features,
                    "num_batches_tracked" => Some(1),
                    _ => None,
                };
                if norm && !t.param && t.offset == 0 && Some(t.numel) == expected {
                    self.stats.insert(Rc::as_ptr(t) as usize);
                } else if !t.param && t.dims == 1 {
                    self.features.insert(Rc::as_ptr(t) as usize);
                }
            }
        }
        Ok(())
    }
}

/// Why a storage is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exempt {
    RunningStats,
    FeatureStats,
    No,
}

fn count_pickle(
    pickle: &[u8],
    allowance: Allowance,
    clock: Clock,
) -> R<(Count, BTreeMap<String, StorageInfo>)> {
    let mut m = Machine {
        data: pickle,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        storages: BTreeMap::new(),
        classes: Default::default(),
        meter: Meter::new(clock),
        code: HashSet::new(),
        code_bytes: 0,
        containers: Vec::new(),
        depth: HashMap::new(),
        dropped: Vec::new(),
    };
    let root = m.run()?;
    // Bytes that are marshalled code count as code (once), never again as a literal.
    let mut walk = Walk {
        literals: m.code.clone(),
        ..Walk::default()
    };
    walk.visit(&root, &mut m.meter)?;
    for v in std::mem::take(&mut m.dropped) {
        walk.visit(&v, &mut m.meter)?;
    }

    // Per storage: the roles of the reachable tensors on it; exempt only when every
    // reference is a statistic of one kind that spans its whole storage.
    let mut roles: HashMap<&str, Role> = HashMap::new();
    let mut exempt_as: HashMap<&str, Exempt> = HashMap::new();
    for (id, (t, role)) in &walk.tensors {
        let r = roles.entry(t.key.as_str()).or_insert(*role);
        *r = (*r).min(*role);
        let kind = if m.storages[&t.key].numel != t.numel {
            Exempt::No
        } else if walk.stats.contains(id) {
            Exempt::RunningStats
        } else if walk.features.contains(id) {
            Exempt::FeatureStats
        } else {
            Exempt::No
        };
        let e = exempt_as.entry(t.key.as_str()).or_insert(kind);
        if *e != kind {
            *e = Exempt::No;
        }
    }
    let mut count = Count {
        storages: m.storages.len() as u64,
        pickle_bytes: pickle.len() as u64,
        classes: m.classes.iter().cloned().collect(),
        params_trainable: walk.trainable.values().sum(),
        ..Count::default()
    };
    let (mut stats, mut features) = (0u64, 0u64);
    for (key, info) in &m.storages {
        let u = units(info);
        let kind = match exempt_as.get(key.as_str()) {
            Some(k) if !walk.raw.contains(key) => *k,
            _ => Exempt::No,
        };
        match (kind, roles.get(key.as_str())) {
            (Exempt::RunningStats, _) => stats += u,
            (Exempt::FeatureStats, _) => features += u,
            (Exempt::No, Some(Role::Trainable)) => {}
            (Exempt::No, Some(Role::Frozen)) => count.frozen += u,
            (Exempt::No, Some(Role::Buffer)) => count.buffers += u,
            (Exempt::No, Some(Role::Other) | None) => count.other += u,
        }
        if kind == Exempt::No {
            count.params += u;
        }
    }
    // Trainable storages count in `params` already; `params - frozen - buffers - other`
    // is what trainable parameters occupy (storage-wise).
    if stats > count.params / EXEMPT_FRACTION {
        // Implausibly large "statistics": they count like any buffer.
        count.buffers += stats;
        count.params += stats;
        stats = 0;
        count.note = "running statistics larger than 1/8 of the model count like buffers; ".into();
    }
    if features > allowance.feature_stats {
        count.buffers += features;
        count.params += features;
        count.note.push_str(&format!(
            "1-D buffers ({features}) over the per-feature allowance ({}) count in full; ",
            allowance.feature_stats
        ));
        features = 0;
    }
    count.exempt_running_stats = stats;
    count.exempt_feature_stats = features;
    // Capacity can live in the structure itself (class means as a bytes attribute, weights
    // as a list of numbers or of memo references): past what names and settings need,
    // every byte, number and item counts.
    count.pickled_values = walk.literal_bytes.saturating_sub(FREE_LITERAL_BYTES)
        + walk.numbers.saturating_sub(FREE_NUMBERS)
        + m.code_bytes.saturating_sub(FREE_CODE_BYTES);
    count.other += count.pickled_values;
    count.params += count.pickled_values;
    count.note.push_str(&describe(&count));
    Ok((count, std::mem::take(&mut m.storages)))
}

/// [`count_pickle`] on its own thread with [`COUNT_STACK_BYTES`] of stack, so that
/// dropping a deeply nested value can never overflow the caller's stack.
fn count_on_big_stack(
    pickle: Vec<u8>,
    allowance: Allowance,
    clock: Clock,
) -> R<(Count, BTreeMap<String, StorageInfo>)> {
    std::thread::Builder::new()
        .name("proctor-count".into())
        .stack_size(COUNT_STACK_BYTES)
        .spawn(move || count_pickle(&pickle, allowance, clock))
        .map_err(|e| ArtifactError::NotArchive(format!("cannot start the counter: {e}")))?
        .join()
        .unwrap_or_else(|_| bad("the pickle could not be counted"))
}

/// Counts a bare `data.pkl` (no archive, no storage data) as the trusted side would, on
/// the counter's own big-stack thread, within `time_budget`: the entry point of the
/// `fuzz/` pickle target.
pub fn count_pickle_bytes(pickle: &[u8], time_budget: Duration) -> R<Count> {
    count_on_big_stack(
        pickle.to_vec(),
        Allowance::default(),
        Clock::start(time_budget),
    )
    .map(|(count, _)| count)
}

fn describe(c: &Count) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (c.frozen, "frozen parameters"),
        (c.buffers, "buffers"),
        (c.other - c.pickled_values, "other stored tensors"),
        (
            c.pickled_values,
            "values kept in the pickled structure (strings, bytes, numbers)",
        ),
    ] {
        if n > 0 {
            parts.push(format!("{n} in {what}"));
        }
    }
    let mut s = if c.params == c.params_trainable {
        "params equals the original rule's trainable count".to_string()
    } else if parts.is_empty() {
        format!(
            "params ({}) differs from the trainable count ({}): shared or wide-dtype storages",
            c.params, c.params_trainable
        )
    } else {
        format!(
            "params ({}) counts every stored tensor element, the original rule ({}) only trainable parameters: {}",
            c.params,
            c.params_trainable,
            parts.join(", ")
        )
    };
    if c.exempt_running_stats > 0 {
        s.push_str(&format!(
            "; {} normalization running statistics not counted",
            c.exempt_running_stats
        ));
    }
    if c.exempt_feature_stats > 0 {
        s.push_str(&format!(
            "; {} per-feature statistics (1-D buffers) not counted",
            c.exempt_feature_stats
        ));
    }
    s
}

/// Copies `from` to `to` in chunks, looking at `clock` between them (an
/// [`ArtifactError::OverTime`] inside the io error when it runs out).
fn copy_within(from: &mut impl Read, to: &mut impl Write, clock: Clock) -> std::io::Result<u64> {
    let mut chunk = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        clock.check().map_err(std::io::Error::other)?;
        let n = match from.read(&mut chunk) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&chunk[..n])?;
        copied += n as u64;
    }
}

/// How many central-directory headers (`PK\x01\x02`) the file holds: an upper bound on
/// the entries the zip reader indexes, whichever end record it settles on (it searches the
/// whole file for one). Stops counting past `max`.
fn central_headers(file: &mut std::fs::File, max: u64, clock: Clock) -> R<u64> {
    use std::io::{Seek, SeekFrom};
    const HEADER: &[u8; 4] = b"PK\x01\x02";
    let io = |e: std::io::Error| ArtifactError::NotArchive(e.to_string());
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut chunk = vec![0u8; 1 << 20];
    // The last 3 bytes of the previous chunk, so that a header across two chunks counts.
    let mut carry = 0usize;
    let mut found = 0u64;
    loop {
        clock.check()?;
        let n = file.read(&mut chunk[carry..]).map_err(io)?;
        if n == 0 {
            break;
        }
        let filled = carry + n;
        found += chunk[..filled].windows(4).filter(|w| w == HEADER).count() as u64;
        if found > max {
            break;
        }
        carry = filled.min(3);
        chunk.copy_within(filled - carry..filled, 0);
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(found)
}

fn read_entry(
    zip: &mut zip::ZipArchive<std::fs::File>,
    name: &str,
    max: u64,
) -> R<Option<Vec<u8>>> {
    let mut entry = match zip.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(ArtifactError::NotArchive(e.to_string())),
    };
    let mut data = Vec::new();
    (&mut entry)
        .take(max + 1)
        .read_to_end(&mut data)
        .map_err(|e| ArtifactError::NotArchive(format!("{name}: {e}")))?;
    Ok(Some(data))
}

/// Counts `artifact` (a `torch.save` zip, untrusted) and writes a canonical copy to
/// `canonical`, holding only the pickle and the storages it references, within
/// `time_budget` ([`COUNT_TIME_BUDGET`] on the server) or [`ArtifactError::OverTime`].
pub fn count_and_rewrite(
    artifact: &Path,
    canonical: &Path,
    allowance: Allowance,
    time_budget: Duration,
) -> R<Count> {
    let clock = Clock::start(time_budget);
    let meta = std::fs::symlink_metadata(artifact)
        .map_err(|e| ArtifactError::NotArchive(format!("no model.pt was exported ({e})")))?;
    if !meta.is_file() {
        return Err(ArtifactError::NotArchive(
            "model.pt is not a regular file".into(),
        ));
    }
    if meta.len() > MAX_ARTIFACT_BYTES {
        return Err(ArtifactError::NotArchive(format!(
            "model.pt is {} bytes, over the {MAX_ARTIFACT_BYTES}-byte limit",
            meta.len()
        )));
    }
    let mut file =
        std::fs::File::open(artifact).map_err(|e| ArtifactError::NotArchive(e.to_string()))?;
    if central_headers(&mut file, MAX_ENTRIES, clock)? > MAX_ENTRIES {
        return bad(format!(
            "the archive holds more than {MAX_ENTRIES} entries: a module's archive holds one per storage"
        ));
    }
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| ArtifactError::NotArchive(e.to_string()))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| ArtifactError::NotArchive("no data.pkl in the archive".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let pickle = read_entry(&mut zip, &pkl_name, PICKLE_ALLOWANCE)?.unwrap_or_default();
    if pickle.len() as u64 > PICKLE_ALLOWANCE {
        let size = zip.by_name(&pkl_name).map(|e| e.size()).unwrap_or(0);
        return Err(ArtifactError::PickleTooLarge {
            size: size.max(pickle.len() as u64),
            max: PICKLE_ALLOWANCE,
        });
    }
    let (count, storages) = count_on_big_stack(pickle.clone(), allowance, clock)?;
    let declared = storages.values().fold(0u64, |total, s| {
        total.saturating_add(s.numel.saturating_mul(s.itemsize))
    });
    if declared > MAX_ARTIFACT_BYTES {
        // Deflated storages could otherwise expand to far more than the artifact's size.
        return bad(format!(
            "the storages declare {declared} bytes in all, over the {MAX_ARTIFACT_BYTES}-byte limit"
        ));
    }
    if let Some(order) = read_entry(&mut zip, &format!("{prefix}byteorder"), 16)? {
        if order != b"little" {
            return bad("only little-endian archives are accepted");
        }
    }
    let out = std::fs::File::create(canonical).map_err(|e| {
        ArtifactError::NotArchive(format!("cannot write the canonical artifact: {e}"))
    })?;
    let mut w = zip::ZipWriter::new(out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let io = |e: std::io::Error| {
        ArtifactError::NotArchive(format!("cannot write the canonical artifact: {e}"))
    };
    let ze = |e: zip::result::ZipError| {
        ArtifactError::NotArchive(format!("cannot write the canonical artifact: {e}"))
    };
    w.start_file("archive/data.pkl", opts).map_err(ze)?;
    w.write_all(&pickle).map_err(io)?;
    w.start_file("archive/byteorder", opts).map_err(ze)?;
    w.write_all(b"little").map_err(io)?;
    for (key, info) in &storages {
        let bytes = info.numel.saturating_mul(info.itemsize);
        let name = format!("{prefix}data/{key}");
        let mut entry = zip
            .by_name(&name)
            .map_err(|_| ArtifactError::NotArchive(format!("storage {key} is missing")))?;
        // The declared size must back the storage before anything is read; then the
        // copy streams (never the declared size in memory) and is checked again.
        if entry.size() != bytes {
            return bad(format!(
                "storage {key} holds {} bytes, expected {bytes}",
                entry.size()
            ));
        }
        w.start_file(format!("archive/data/{key}"), opts)
            .map_err(ze)?;
        let copied = copy_within(&mut (&mut entry).take(bytes), &mut w, clock).map_err(|e| {
            match e.downcast::<ArtifactError>() {
                Ok(over_time) => over_time,
                Err(e) => ArtifactError::NotArchive(format!("storage {key}: {e}")),
            }
        })?;
        if copied != bytes {
            return bad(format!(
                "storage {key} holds {copied} bytes, expected {bytes}"
            ));
        }
    }
    w.start_file("archive/version", opts).map_err(ze)?;
    w.write_all(b"3\n").map_err(io)?;
    w.finish().map_err(ze)?;
    Ok(count)
}
