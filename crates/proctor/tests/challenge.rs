//! The challenge platform end to end: real data generation, real sandboxes, trusted
//! counting and scoring.

mod util;

use std::path::PathBuf;

use proctor_challenge::evaluate::EvalOptions;
use proctor_challenge::{data, Catalog, Platform, PlatformConfig, Split};
use proctor_engine::LocalBackend;
use proctor_store::Submission;

const C500K: &str = "imagenet-pareto-500k";

/// A platform over the real `$PROCTOR_HOME` (data cache, runs) with a fresh database.
async fn platform(db: &tempfile::TempDir, eval: EvalOptions) -> Platform<LocalBackend> {
    let backend = util::backend().await;
    let mut config = PlatformConfig::new(backend.config().home.clone());
    config.database = db.path().join("proctor.db");
    config.eval = eval;
    Platform::open(backend, config).await.expect("platform")
}

fn example(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/challenge")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn submit_py(p: &Platform<LocalBackend>, code: &str) -> Submission {
    p.submit(C500K, "solution.py", code.as_bytes(), None, Split::Public)
        .await
        .expect("submit")
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    proctor_challenge::intake::zip_files(entries).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn public_data_is_the_original_tensor_for_tensor() {
    let backend = util::backend().await;
    let home = backend.config().home.clone();
    let spec = Catalog::builtin().get(C500K).unwrap().data.clone();
    let set = data::ensure(&backend, &home, &spec, Split::Public)
        .await
        .unwrap();
    // Pinned: the original benchmark's generator under torch 2.4.1.
    let pinned = [
        (
            "test_inputs",
            "e9ff96e4be3e6136005bce34658ea310f80c8cb953faa3b9d2ddf925f23909fd",
        ),
        (
            "test_labels",
            "62eebe3ba2b519ec3042f0ae084b71c14ac0d3054a725e32217b725545655045",
        ),
        (
            "train",
            "48497204c1ac2bf747fd106a447bcfd6d694385530acb6c4f1cf95f7995667ed",
        ),
        (
            "val",
            "d286386d0a2397addfecedfea65d15c1d8f32206eea6fcec4840d68e76404e2a",
        ),
    ];
    for (name, digest) in pinned {
        assert_eq!(set.sha256[name], digest, "{name}");
    }
    assert_eq!(set.oracle_accuracy, 1.0);
    assert_eq!(set.test_labels.len(), 1024);
    // Every variant shares the public data.
    for c in Catalog::builtin().list() {
        assert_eq!(c.data, spec);
    }
    // Official data: same shapes, other tensors.
    let official = data::ensure(&backend, &home, &spec, Split::Official)
        .await
        .unwrap();
    assert_ne!(official.sha256["train"], set.sha256["train"]);
    assert_eq!(official.test_labels.len(), 1024);
    // The official tensors come from this machine's secret, so the nearest-prototype
    // oracle is near perfect but not pinned (0.998 was seen on a fresh machine).
    assert!(
        official.oracle_accuracy > 0.99,
        "official oracle accuracy {}",
        official.oracle_accuracy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn baseline_and_strong_reference_on_public_500k() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    // The original benchmark's baseline, submitted as a bare solution.py.
    let s = p
        .submit(
            C500K,
            "solution.py",
            &example("baseline/solution.py"),
            None,
            Split::Public,
        )
        .await
        .unwrap();
    let base = p.evaluate_now(&s.id).await.unwrap();
    let view = p.view(&base);
    eprintln!("baseline: {}", serde_json::to_string(&view).unwrap());
    assert_eq!(base.status, "scored", "{view:?}");
    let acc = base.accuracy.unwrap();
    assert!((acc - 0.9014).abs() <= 0.01, "baseline accuracy {acc}");
    assert_eq!(base.params, Some(197_120));
    assert_eq!(base.params_trainable, Some(197_120));
    assert!((base.score.unwrap() - (acc - 0.72) / 0.28 * 100.0).abs() < 1e-9);
    assert_eq!(view.oracle_accuracy, Some(1.0));
    // How long the overhead is belongs to `proctor bench` (challenge_eval_overhead_s), not
    // to a test on a shared machine; here only that it is measured.
    assert!(
        view.overhead_s.is_some_and(|o| o >= 0.0),
        "{:?}",
        view.overhead_s
    );

    // The strong reference, as a zip project.
    let zip = zip_of(&[
        (
            "agentics.solution.json",
            &example("strong/agentics.solution.json"),
        ),
        ("solution.py", &example("strong/solution.py")),
    ]);
    let s = p
        .submit(C500K, "strong.zip", &zip, None, Split::Public)
        .await
        .unwrap();
    assert_eq!(s.name.as_deref(), Some("nearest-class-mean"));
    let strong = p.evaluate_now(&s.id).await.unwrap();
    eprintln!(
        "strong: {}",
        serde_json::to_string(&p.view(&strong)).unwrap()
    );
    assert_eq!(strong.status, "scored");
    assert!(strong.accuracy.unwrap() >= 0.98, "{:?}", strong.accuracy);
    assert!(strong.score.unwrap() > base.score.unwrap() + 20.0);
    assert_eq!(strong.params, Some(49_280));
}

const OVER: &str = r#"
import torch.nn as nn
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return nn.Sequential(nn.Linear(384, 1300), nn.ReLU(), nn.Linear(1300, 128))
"#;

const FROZEN: &str = r#"
import torch, torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(384, 128)            # 49,280 trainable
        self.hidden = nn.Linear(384, 1024)         # 394,240 frozen
        self.hidden2 = nn.Linear(1024, 128)        # 131,200 frozen
        for p in list(self.hidden.parameters()) + list(self.hidden2.parameters()):
            p.requires_grad_(False)
    def forward(self, x):
        return self.head(x) + self.hidden2(torch.relu(self.hidden(x)))
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return Net()
"#;

const BUFFERS: &str = r#"
import torch, torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(384, 128)
        self.register_buffer("w1", torch.randn(384, 1024))
        self.extra = [torch.randn(1024, 128)]      # a tensor kept in a plain list
    def forward(self, x):
        return self.head(x) + torch.relu(x @ self.w1) @ self.extra[0]
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return Net()
"#;

const GRAD_OFF: &str = r#"
import torch, torch.nn as nn
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        model = nn.Sequential(nn.Linear(384, 1300), nn.ReLU(), nn.Linear(1300, 128))
        # ... train with all 668k parameters, then hide most of them from the original rule
        for p in model[0].parameters():
            p.requires_grad_(False)
        return model
"#;

const LIST_WEIGHTS: &str = r#"
import torch, torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(384, 128)
        self.secret = torch.randn(1_300_000).tolist()   # weights as a Python list
    def forward(self, x):
        return self.head(x)
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return Net()
"#;

/// Class means quantised to 7 bits in a `bytes` attribute (128 × 384 = 49,152 bytes,
/// under the pickle cap), decoded in forward(): no tensor stored at all.
const BYTES_PROTOTYPES: &str = r#"
import torch, torch.nn as nn
class BytesPrototypes(nn.Module):
    def __init__(self, blob, scale, num_classes, dim):
        super().__init__()
        self.blob, self.scale, self.shape = blob, scale, (num_classes, dim)
    def forward(self, x):
        p = (torch.frombuffer(bytearray(self.blob), dtype=torch.uint8).float().reshape(self.shape) - 64) * self.scale
        return x @ p.T - 0.5 * (p * p).sum(1)
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        c, d = metadata["num_classes"], metadata["input_dim"]
        sums, counts = torch.zeros(c, d), torch.zeros(c)
        for x, y in train_loader:
            sums.index_add_(0, y, x)
            counts.index_add_(0, y, torch.ones(len(y)))
        means = sums / counts.clamp(min=1).unsqueeze(1)
        scale = float(means.abs().max()) / 63
        q = ((means / scale).round().clamp(-63, 63) + 64).to(torch.uint8)
        return BytesPrototypes(q.numpy().tobytes(), scale, c, d)
"#;

const WIDE_DTYPE: &str = r#"
import torch, torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(384, 128)
        # 600k float32 weights packed two per float64 element: 300k elements.
        self.register_buffer("packed", torch.randn(600_000).view(torch.float64).clone())
    def forward(self, x):
        return self.head(x)
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return Net()
"#;

const BATCHNORM: &str = r#"
import torch, torch.nn as nn
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        model = nn.Sequential(
            nn.Linear(384, 610), nn.BatchNorm1d(610), nn.ReLU(),
            nn.Linear(610, 356), nn.BatchNorm1d(356), nn.ReLU(),
            nn.Linear(356, 128))
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 499_994
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(3):
            model.train()
            for x, y in train_loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        return model
"#;

/// Input standardisation kept as buffers (4 of the 38 published solutions re-run): an
/// input mean and standard deviation, per-feature statistics like BatchNorm's.
const MEAN_STD: &str = r#"
import torch, torch.nn as nn
class Net(nn.Module):
    def __init__(self, x):
        super().__init__()
        self.register_buffer("mean", x.mean(0))
        self.register_buffer("std", x.std(0) + 1e-6)
        self.head = nn.Linear(384, 128)
    def forward(self, x):
        return self.head((x - self.mean) / self.std)
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return Net(torch.cat([x for x, _ in train_loader]))
"#;

/// A weight matrix cut into 1-D buffers (one per row): past the per-feature allowance.
const ROWS_AS_BUFFERS: &str = r#"
import torch, torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(384, 128)
        for i in range(128):
            self.register_buffer(f"row{i}", torch.randn(384))
    def forward(self, x):
        w = torch.stack([getattr(self, f"row{i}") for i in range(128)])
        return self.head(x) + x @ w.t()
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return Net()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capacity_is_counted_wherever_it_hides() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    let cases = [
        ("over", OVER),
        ("frozen", FROZEN),
        ("buffers", BUFFERS),
        ("grad_off", GRAD_OFF),
        ("list", LIST_WEIGHTS),
        ("wide", WIDE_DTYPE),
        ("batchnorm", BATCHNORM),
        ("mean_std", MEAN_STD),
        ("rows", ROWS_AS_BUFFERS),
        ("bytes", BYTES_PROTOTYPES),
    ];
    let mut ids = Vec::new();
    for (name, code) in cases {
        ids.push((name, submit_py(&p, code).await.id));
    }
    p.start_workers(2);
    let mut done = std::collections::HashMap::new();
    for (name, id) in ids {
        let s = p.wait(&id).await.unwrap();
        eprintln!("{name}: {}", serde_json::to_string(&p.view(&s)).unwrap());
        done.insert(name, s);
    }
    // Capacity kept as bytes in the pickled structure counts, 1 per byte past the 4,096
    // bytes of names a module tree may use freely.
    let bytes = &done["bytes"];
    assert_eq!(bytes.status, "scored", "{bytes:?}");
    let counted = bytes.params.unwrap();
    assert!((49_152 - 4_096..49_152).contains(&counted), "{bytes:?}");
    assert_eq!(bytes.params_trainable, Some(0));
    let result: proctor_challenge::evaluate::Evaluation =
        serde_json::from_value(bytes.result.clone().unwrap()).unwrap();
    assert!(
        result
            .count
            .unwrap()
            .note
            .contains("values kept in the pickled structure"),
        "{bytes:?}"
    );
    let over = &done["over"];
    assert_eq!(over.status, "over_budget");
    assert_eq!(over.score, Some(0.0));
    // On the public split its accuracy is still measured and shown, unranked.
    assert!(over.accuracy.is_some(), "{over:?}");
    assert!(over.error.as_deref().unwrap().contains("not ranked"));
    assert_eq!(over.params, Some(667_028));
    assert!(over
        .error
        .as_deref()
        .unwrap()
        .contains("over the limit of 500000"));

    let frozen = &done["frozen"];
    assert_eq!(frozen.status, "over_budget");
    assert_eq!(frozen.params_trainable, Some(49_280));
    assert_eq!(frozen.params, Some(49_280 + 394_240 + 131_200));
    assert!(
        frozen
            .error
            .as_deref()
            .unwrap()
            .contains("525440 in frozen parameters"),
        "{:?}",
        frozen.error
    );

    let buffers = &done["buffers"];
    assert_eq!(buffers.status, "over_budget");
    assert_eq!(buffers.params_trainable, Some(49_280));
    assert_eq!(buffers.params, Some(49_280 + 384 * 1024 + 1024 * 128));

    let grad_off = &done["grad_off"];
    assert_eq!(grad_off.status, "over_budget");
    assert_eq!(grad_off.params_trainable, Some(1300 * 128 + 128));
    assert_eq!(grad_off.params, Some(667_028));

    let list = &done["list"];
    assert_eq!(list.status, "rejected");
    assert!(
        list.error
            .as_deref()
            .unwrap()
            .contains("over the 1048576-byte allowance: keep weights in tensors"),
        "{:?}",
        list.error
    );

    let wide = &done["wide"];
    assert_eq!(wide.status, "over_budget");
    assert_eq!(wide.params, Some(49_280 + 600_000));

    // 2 × input_dim elements of 1-D buffers are exempt; past that they all count.
    let mean_std = &done["mean_std"];
    assert_eq!(mean_std.status, "scored", "{:?}", mean_std.error);
    assert_eq!(mean_std.params, Some(49_280));
    assert_eq!(mean_std.params_trainable, Some(49_280));
    let note = p.view(mean_std).params_note.unwrap();
    assert!(
        note.contains("768 per-feature statistics (1-D buffers) not counted"),
        "{note}"
    );
    let rows = &done["rows"];
    assert_eq!(rows.status, "scored", "{:?}", rows.error);
    assert_eq!(rows.params, Some(49_280 + 128 * 384));
    let note = p.view(rows).params_note.unwrap();
    assert!(
        note.contains("1-D buffers (49152) over the per-feature allowance (768) count in full"),
        "{note}"
    );

    let bn = &done["batchnorm"];
    assert_eq!(bn.status, "scored", "{:?}", bn.error);
    assert_eq!(bn.params_trainable, Some(499_994));
    assert_eq!(bn.params, Some(499_994));
    let note = p.view(bn).params_note.unwrap();
    assert!(
        note.contains("1936 normalization running statistics not counted"),
        "{note}"
    );
}

const CHEAT: &str = r#"
import gc, os, re, sys, torch, torch.nn as nn

def search():
    found = []
    for k, v in os.environ.items():
        if re.search("label|secret|official|test", k + v, re.I):
            found.append("env:" + k)
    for root in ["/", "..", "../..", "/root", "/tmp", os.path.expanduser("~")]:
        for dirpath, dirs, files in os.walk(root):
            if dirpath.startswith(("/proc", "/sys", "/dev")) or dirpath.count("/") > 8:
                dirs[:] = []
                continue
            for f in files:
                if "label" in f or f == "secret" or f.endswith(".db") or (f.endswith(".safetensors") and "test" in f):
                    path = os.path.join(dirpath, f)
                    try:
                        open(path, "rb").read(16)
                        found.append("file:" + path)
                    except OSError:
                        pass
    for o in gc.get_objects():
        if isinstance(o, torch.Tensor) and o.dtype == torch.long and o.numel() == 1024:
            found.append("tensor in memory")
    return found

class Cheat(nn.Module):
    def __init__(self, found):
        super().__init__()
        self.lin = nn.Linear(384, 128)
        self.found = found
    def forward(self, x):
        hits = search()
        print("CHEAT at inference found:", hits, file=sys.stderr)
        labels = None
        for h in hits:
            if h.startswith("file:") and "label" in h:
                from safetensors.torch import load_file
                labels = load_file(h[5:])["y"]
        if labels is None:
            return self.lin(x)
        self.pos = getattr(self, "pos", 0)
        out = torch.nn.functional.one_hot(labels[self.pos:self.pos + len(x)], 128).float()
        self.pos += len(x)
        return out

class Solution:
    def solve(self, train_loader, val_loader, metadata):
        found = search()
        print("CHEAT during training found:", found, file=sys.stderr)
        model = Cheat(found)
        if found:
            # Training output is withheld on the official split: what the search found
            # shows in the parameter count instead.
            model.found_something = nn.Linear(384, 1000)
        return model
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searching_for_test_labels_or_official_data_finds_nothing() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    let s = p
        .submit(
            C500K,
            "solution.py",
            CHEAT.as_bytes(),
            None,
            Split::Official,
        )
        .await
        .unwrap();
    let s = p.evaluate_now(&s.id).await.unwrap();
    eprintln!("{}", s.logs);
    assert_eq!(s.status, "scored", "{:?}", s.error);
    // The training search found nothing: the model is the bare linear layer.
    assert_eq!(s.params, Some(384 * 128 + 128), "{}", s.logs);
    // Training and inference read the official data, so what they print never comes
    // back (solve() could print the official class means and carry them back in its
    // source; forward() could print the test inputs); nor their peak memory or wall
    // time, which the code could make proportional to a value: each section is its
    // status alone, and the times are in whole minutes.
    assert!(!s.logs.contains("CHEAT"), "{}", s.logs);
    for section in ["== train", "== infer"] {
        let run = &s.logs[s.logs.find(section).expect("a section per run")..];
        let run = &run[..run[3..].find("== ").map_or(run.len(), |end| end + 3)];
        assert!(run.contains(": status ok ==\n"), "{}", s.logs);
        assert!(
            run.contains("output, time and memory withheld"),
            "{}",
            s.logs
        );
        assert!(!run.chars().any(|c| c.is_ascii_digit()), "{}", s.logs);
    }
    let view = p.view(&s);
    let total = view.total_s.expect("a total time");
    assert!(total > 0.0 && total % 60.0 == 0.0, "{total}");
    let solve_s = s.result.as_ref().unwrap()["solve_s"].as_f64();
    assert!(solve_s.is_none_or(|t| t % 60.0 == 0.0), "{solve_s:?}");
    assert_eq!(view.overhead_s, None);
    assert_eq!(
        s.result.as_ref().unwrap()["overhead_s"],
        serde_json::Value::Null
    );
    // An untrained linear layer: chance level on labels it cannot see.
    assert!(s.accuracy.unwrap() < 0.05, "{:?}", s.accuracy);
    assert_eq!(s.score, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_become_statuses_with_reasons() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    // The same database with a short time limit, for the sleeper.
    let short = platform(
        &db,
        EvalOptions {
            time_limit_s: Some(5.0),
            ..EvalOptions::default()
        },
    )
    .await;
    let raising = submit_py(
        &p,
        "class Solution:\n    def solve(self, train_loader, val_loader, metadata):\n        raise ValueError('boom in solve')\n",
    )
    .await;
    let sleeping = submit_py(
        &p,
        "import time\nclass Solution:\n    def solve(self, train_loader, val_loader, metadata):\n        time.sleep(600)\n",
    )
    .await;
    let not_module = submit_py(
        &p,
        "class Solution:\n    def solve(self, train_loader, val_loader, metadata):\n        return 42\n",
    )
    .await;
    let lambda = submit_py(
        &p,
        "import threading, torch.nn as nn\nclass Solution:\n    def solve(self, a, b, m):\n        net = nn.Linear(384, 128)\n        net.lock = threading.Lock()\n        return net\n",
    )
    .await;
    let bad_zip = p
        .submit(
            C500K,
            "evil.zip",
            &zip_of(&[("agentics.solution.json", b"{}"), ("../../x.py", b"x")]),
            None,
            Split::Public,
        )
        .await
        .unwrap();
    let no_manifest = p
        .submit(
            C500K,
            "p.zip",
            &zip_of(&[("solution.py", b"class Solution: pass\n")]),
            None,
            Split::Public,
        )
        .await
        .unwrap();
    let (raising, sleeping, not_module, lambda) = tokio::join!(
        p.evaluate_now(&raising.id),
        short.evaluate_now(&sleeping.id),
        p.evaluate_now(&not_module.id),
        p.evaluate_now(&lambda.id)
    );
    let raising = raising.unwrap();
    assert_eq!(raising.status, "error");
    let err = raising.error.unwrap();
    // The participant's own file and line, none of proctor's harness.
    assert!(
        err.contains("Traceback (most recent call last)")
            && err.contains("File \"solution.py\", line 3, in solve")
            && err.contains("ValueError: boom in solve"),
        "{err}"
    );
    assert!(
        !err.contains("challenge_train") && !err.contains("inputs/"),
        "{err}"
    );
    let sleeping = sleeping.unwrap();
    assert_eq!(sleeping.status, "timeout");
    assert_eq!(
        sleeping.error.as_deref(),
        Some("training passed the time limit of 5 s and was stopped")
    );
    let not_module = not_module.unwrap();
    assert_eq!(not_module.status, "error");
    assert!(not_module
        .error
        .unwrap()
        .contains("must return an instance of torch.nn.Module, got int"));
    // Lambdas and local classes export (by value); a lock cannot. solve() did return.
    let lambda = lambda.unwrap();
    assert!(p.view(&lambda).solve_s.is_some(), "{:?}", lambda.result);
    assert_eq!(lambda.status, "error");
    let err = lambda.error.unwrap();
    assert!(
        err.contains("cannot be saved with torch.save") && err.contains("'_thread.lock'"),
        "{err}"
    );
    // Rejected uploads are stored and visible with their reason.
    for (s, msg) in [
        (
            &bad_zip,
            "unsafe path \"../../x.py\" in the zip: entries must be relative paths without `..`",
        ),
        (
            &no_manifest,
            "missing agentics.solution.json at the root of the zip",
        ),
    ] {
        let stored = p.get(&s.id).await.unwrap();
        assert_eq!(stored.status, "rejected");
        assert!(
            stored.error.as_deref().unwrap().starts_with(msg),
            "{:?}",
            stored.error
        );
    }
    let listed = p
        .store()
        .list(
            &proctor_store::Filter {
                challenge: Some(C500K),
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_evaluation_resumes_after_a_restart() {
    let db = tempfile::tempdir().unwrap();
    let id = {
        let p = platform(&db, EvalOptions::default()).await;
        let s = p
            .submit(
                C500K,
                "solution.py",
                &example("strong/solution.py"),
                None,
                Split::Public,
            )
            .await
            .unwrap();
        // A worker claimed it, then its process died (kill -9) mid-evaluation.
        assert!(p.store().claim(&s.id).await.unwrap().is_some());
        p.store().set_owner(&s.id, i32::MAX as i64).await.unwrap();
        s.id
    };
    let p = platform(&db, EvalOptions::default()).await;
    assert_eq!(p.get(&id).await.unwrap().status, "queued");
    p.start_workers(1);
    let s = p.wait(&id).await.unwrap();
    assert_eq!(s.status, "scored");
    assert_eq!(s.attempts, 2);
}

/// The pattern of 39 of the 175 published Frontier-CS imagenet_pareto solutions: the model
/// class is defined inside `solve()`, closes over solve()'s locals, calls
/// `super(Net, self)` (a closure cell pointing back at the class) and keeps a lambda.
const LOCAL_CLASS: &str = r#"
import torch, torch.nn as nn

class Solution:
    def solve(self, train_loader, val_loader, metadata):
        hidden = 256
        scale = torch.tensor(2.0)          # a tensor captured by the class: counted too

        class Block(nn.Module):
            def __init__(self, d):
                super().__init__()
                self.lin = nn.Linear(d, d)
            def forward(self, x):
                return x + torch.relu(self.lin(x))

        class Net(nn.Module):
            def __init__(self, input_dim, num_classes):
                super(Net, self).__init__()
                self.inp = nn.Linear(input_dim, hidden)
                self.block = Block(hidden)
                self.out = nn.Linear(hidden, num_classes)
                self.act = lambda x: torch.relu(x) * scale / 2
            def forward(self, x):
                return self.out(self.block(self.act(self.inp(x))))

        model = Net(metadata["input_dim"], metadata["num_classes"])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(3):
            for x, y in train_loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        return model
"#;

/// [`LOCAL_CLASS`] with its classes moved to module level (what torch.save could always
/// export): the same computation, so the same weights and predictions.
const MODULE_CLASS: &str = r#"
import torch, torch.nn as nn

hidden = 256
scale = torch.tensor(2.0)

class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)
    def forward(self, x):
        return x + torch.relu(self.lin(x))

def act(x):
    return torch.relu(x) * scale / 2

class Net(nn.Module):
    def __init__(self, input_dim, num_classes):
        super(Net, self).__init__()
        self.inp = nn.Linear(input_dim, hidden)
        self.block = Block(hidden)
        self.out = nn.Linear(hidden, num_classes)
        self.act = act
    def forward(self, x):
        return self.out(self.block(self.act(self.inp(x))))

class Solution:
    def solve(self, train_loader, val_loader, metadata):
        model = Net(metadata["input_dim"], metadata["num_classes"])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(3):
            for x, y in train_loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        return model
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_class_defined_inside_solve_scores_like_its_module_level_twin() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    let local = submit_py(&p, LOCAL_CLASS).await;
    let module = submit_py(&p, MODULE_CLASS).await;
    let (local, module) = tokio::join!(p.evaluate_now(&local.id), p.evaluate_now(&module.id));
    let (local, module) = (local.unwrap(), module.unwrap());
    eprintln!("local: {}", serde_json::to_string(&p.view(&local)).unwrap());
    eprintln!(
        "module: {}",
        serde_json::to_string(&p.view(&module)).unwrap()
    );
    assert_eq!(local.status, "scored", "{:?}", local.error);
    assert_eq!(module.status, "scored", "{:?}", module.error);
    let trainable = 384 * 256 + 256 + 256 * 256 + 256 + 256 * 128 + 128;
    assert_eq!(module.params_trainable, Some(trainable));
    assert_eq!(local.params_trainable, Some(trainable));
    // The captured scalar tensor is a stored tensor in both (a module global is not: it
    // comes back from the source, which inference re-imports).
    assert_eq!(local.params, Some(trainable + 1));
    assert_eq!(module.params, Some(trainable));
    assert!(module.accuracy.unwrap() > 0.2, "{:?}", module.accuracy);
    assert_eq!(local.accuracy, module.accuracy);
    let classes = local.result.as_ref().unwrap()["count"]["classes"].to_string();
    assert!(
        classes.contains("local class solution.Solution.solve.<locals>.Net"),
        "{classes}"
    );
}

/// Weights shipped as a data file beside the source and read in forward(): the counted
/// model is one small layer, the real capacity is the file.
const DATA_FILE_WEIGHTS: &str = r#"
import os, numpy as np, torch, torch.nn as nn
WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights.bin")

def load():
    return torch.from_numpy(np.fromfile(WEIGHTS, dtype=np.float32).reshape(384, 128))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(384, 128)
    def forward(self, x):
        return self.head(x) + x @ load()

class Solution:
    def solve(self, train_loader, val_loader, metadata):
        # Training may read the project's files: what ends up in the model is counted.
        assert load().shape == (384, 128)
        return Net()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weights_in_a_data_file_never_reach_inference() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    let manifest = br#"{"challenge": "imagenet-pareto-500k", "entrypoint": "solution.py", "class": "Solution"}"#;
    let weights = vec![0u8; 384 * 128 * 4];
    let zip = zip_of(&[
        ("agentics.solution.json", manifest),
        ("solution.py", DATA_FILE_WEIGHTS.as_bytes()),
        ("weights.bin", &weights),
    ]);
    let s = p
        .submit(C500K, "p.zip", &zip, None, Split::Public)
        .await
        .unwrap();
    let s = p.evaluate_now(&s.id).await.unwrap();
    eprintln!("{}", serde_json::to_string(&p.view(&s)).unwrap());
    assert_eq!(s.status, "error", "{:?}", s.error);
    let err = s.error.unwrap();
    assert!(
        err.contains("the model failed on the test inputs")
            && err.contains("FileNotFoundError")
            && err.contains("weights.bin"),
        "{err}"
    );
    assert!(s.logs.contains("== train: status ok"), "{}", s.logs);
}

/// Sizes its threads from the machine, as 18 of the 175 published solutions do, and
/// reports what it sees; the rest take torch's per-host default.
const HOST_SIZED: &str = r#"
import multiprocessing, os, torch, torch.nn as nn

class Solution:
    def solve(self, train_loader, val_loader, metadata):
        torch.set_num_threads(min(8, os.cpu_count()))
        print("SEES", os.cpu_count(), len(os.sched_getaffinity(0)), multiprocessing.cpu_count(),
              torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS"))
        model = nn.Sequential(nn.Linear(384, 512), nn.ReLU(), nn.Linear(512, 128))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(2):
            for x, y in train_loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        return model
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_declared_cpu_profile_hides_the_host() {
    let db = tempfile::tempdir().unwrap();
    let on_host = |cpus| EvalOptions {
        simulate_host_cpus: Some(cpus),
        ..EvalOptions::default()
    };
    let (small, large) = (
        platform(&db, on_host(2)).await,
        platform(&db, on_host(16)).await,
    );
    let threads = Catalog::builtin().get(C500K).unwrap().resources.cpu_threads;
    assert_eq!(threads, 8);
    let a = submit_py(&small, HOST_SIZED).await;
    let b = submit_py(&small, HOST_SIZED).await;
    let (a, b) = tokio::join!(small.evaluate_now(&a.id), large.evaluate_now(&b.id));
    let (a, b) = (a.unwrap(), b.unwrap());
    for s in [&a, &b] {
        assert_eq!(s.status, "scored", "{:?}", s.error);
        assert!(s.logs.contains("SEES 8 8 8 8 8 8"), "{}", s.logs);
    }
    assert!(a.accuracy.unwrap() > 0.1, "{:?}", a.accuracy);
    assert_eq!(a.accuracy, b.accuracy);
}

/// A solve() that replaces the export and writes its own `model.pt`: KIND picks one of the
/// issue's bombs for the trusted counter.
const HOSTILE_ARTIFACT: &str = r#"
import struct, zipfile, torch.nn as nn, proctor_export

def nested():
    # 65,000 levels of nesting in 65 KB.
    return b"\x80\x02]" + b"\x85" * 65000 + b"."

def copies():
    # A 32,000-item list memoized, then builtins.list of it 4,000 times.
    return (b"\x80\x02(" + b"N" * 32000 + b"lq\x00cbuiltins\nlist\nq\x010"
            + b"h\x01h\x00\x85R0" * 4000 + b"N.")

def declared():
    # One storage declaring 2 GiB, backed by 64 bytes.
    n = struct.pack("<I", 512 << 20)
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
            b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ" + n
            + b"tQK\x00J" + n + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR.")

def write(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", globals()[KIND]())
        z.writestr("archive/data/0", b"\0" * 64)

class Solution:
    def solve(self, train_loader, val_loader, metadata):
        proctor_export.save = lambda model, path: write(path)
        return nn.Linear(384, 128)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_artifacts_written_by_solve_end_as_statuses_and_the_platform_goes_on() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    let code = |kind: &str| format!("KIND = {kind:?}\n{HOSTILE_ARTIFACT}");
    let nested = submit_py(&p, &code("nested")).await;
    let copies = submit_py(&p, &code("copies")).await;
    let declared = submit_py(&p, &code("declared")).await;
    let (nested, copies, declared) = tokio::join!(
        p.evaluate_now(&nested.id),
        p.evaluate_now(&copies.id),
        p.evaluate_now(&declared.id)
    );
    let (nested, copies, declared) = (nested.unwrap(), copies.unwrap(), declared.unwrap());
    for s in [&nested, &copies, &declared] {
        eprintln!("{}", serde_json::to_string(&p.view(s)).unwrap());
    }
    assert_eq!(nested.status, "rejected");
    assert!(
        nested
            .error
            .as_deref()
            .unwrap()
            .contains("more than 4096 levels deep"),
        "{:?}",
        nested.error
    );
    assert_eq!(copies.status, "rejected");
    assert!(
        copies
            .error
            .as_deref()
            .unwrap()
            .contains("more than 4000000 items"),
        "{:?}",
        copies.error
    );
    assert_eq!(declared.status, "rejected");
    assert!(
        declared
            .error
            .as_deref()
            .unwrap()
            .contains("storage 0 holds 64 bytes, expected 2147483648"),
        "{:?}",
        declared.error
    );
    // The platform goes on: the next submission is evaluated as usual.
    let plain = submit_py(
        &p,
        "import torch.nn as nn\nclass Solution:\n    def solve(self, a, b, m):\n        return nn.Linear(384, 128)\n",
    )
    .await;
    let plain = p.evaluate_now(&plain.id).await.unwrap();
    assert_eq!(plain.status, "scored", "{:?}", plain.error);
    assert_eq!(plain.params, Some(384 * 128 + 128));
}

/// A 64-block residual network (387 modules, 88,224 parameters): an honest deep model
/// whose pickled structure (about 170 KB with torch 2.4) is over a 64 KiB cap.
const DEEP_RESIDUAL: &str = r#"
import torch.nn as nn
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout())
    def forward(self, x):
        return x + self.f(x)
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        return nn.Sequential(nn.Linear(384, 32), *[Block() for _ in range(64)], nn.Linear(32, 128))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deep_residual_network_is_counted_exactly() {
    let db = tempfile::tempdir().unwrap();
    let p = platform(&db, EvalOptions::default()).await;
    let s = submit_py(&p, DEEP_RESIDUAL).await;
    let s = p.evaluate_now(&s.id).await.unwrap();
    eprintln!("{}", serde_json::to_string(&p.view(&s)).unwrap());
    assert_eq!(s.status, "scored", "{:?}", s.error);
    // Stem, 64 × (Linear 32×32 + BatchNorm weight and bias), head; running statistics free.
    let params = 384 * 32 + 32 + 64 * (32 * 32 + 32 + 64) + 32 * 128 + 128;
    assert_eq!(s.params, Some(params));
    assert_eq!(s.params_trainable, Some(params));
    let result: proctor_challenge::evaluate::Evaluation =
        serde_json::from_value(s.result.clone().unwrap()).unwrap();
    let count = result.count.unwrap();
    eprintln!("{count:?}");
    assert!(count.pickle_bytes > 64 << 10, "{count:?}");
    assert_eq!(count.pickled_values, 0, "{count:?}");
}
