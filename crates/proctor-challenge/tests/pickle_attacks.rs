//! Hostile `model.pt` files: the trusted counter rejects or counts them without
//! crashing the caller, even on a tokio worker's 2 MiB stack, and without
//! allocating what a storage merely declares.

use std::io::Write;

use proctor_challenge::artifact::count_and_rewrite;
use zip::write::SimpleFileOptions;

fn archive(dir: &std::path::Path, entries: &[(&str, &[u8])]) -> std::path::PathBuf {
    let path = dir.join("model.pt");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
    path
}

/// Counts `pickle` (plus `extra` entries) on a thread with a tokio worker's stack.
fn count(pickle: Vec<u8>, extra: Vec<(String, Vec<u8>)>) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut entries: Vec<(&str, &[u8])> = vec![("archive/data.pkl", &pickle)];
    entries.extend(extra.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    let path = archive(dir.path(), &entries);
    let out = dir.path().join("canonical.pt");
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || count_and_rewrite(&path, &out, Default::default()))
        .unwrap()
        .join()
        .expect("the counter must not crash its caller")
        .map(|c| format!("{c:?}"))
        .map_err(|e| e.to_string())
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    // EMPTY_LIST, then TUPLE1 65,000 times: 65,000 levels of nesting in 65 KB.
    let mut p = vec![0x80, 2, b']'];
    p.extend(std::iter::repeat_n(0x85u8, 60_000));
    p.push(b'.');
    let r = count(p, vec![]);
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn a_list_copied_many_times_exhausts_the_work_budget() {
    // A 30,000-item list memoized, then builtins.list(memo) reduced 5,000 times.
    let mut p = vec![0x80, 2, b'('];
    p.extend(std::iter::repeat_n(b'N', 30_000));
    p.extend([b'l', b'q', 0]); // LIST, BINPUT 0
    p.extend(b"cbuiltins\nlist\n");
    p.extend([b'q', 1, b'0']); // BINPUT 1, POP
    for _ in 0..5_000 {
        p.extend([b'h', 1, b'h', 0, 0x85, b'R', b'0']); // GET list, GET items, TUPLE1, REDUCE, POP
    }
    p.extend([b'N', b'.']);
    let err = count(p, vec![]).unwrap_err();
    assert!(err.contains("items"), "{err}");
}

/// A pickle holding one float storage of `numel` elements (key "0").
fn one_storage(numel: u32) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
    p.push(b'(');
    // persistent id ('storage', torch.FloatStorage, '0', 'cpu', numel)
    p.push(b'(');
    p.extend([b'X', 7, 0, 0, 0]);
    p.extend(b"storage");
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend([b'X', 1, 0, 0, 0, b'0']);
    p.extend([b'X', 3, 0, 0, 0]);
    p.extend(b"cpu");
    p.push(b'J');
    p.extend(numel.to_le_bytes());
    p.extend([b't', b'Q']); // TUPLE, BINPERSID
    p.extend([b'K', 0]); // offset
    p.extend([b'J']);
    p.extend(numel.to_le_bytes());
    p.push(0x85); // size
    p.extend([b'K', 1, 0x85]); // stride
    p.push(0x89); // requires_grad
    p.extend(b"ccollections\nOrderedDict\n)R"); // backward hooks
    p.extend([b't', b'R', b'.']);
    p
}

#[test]
fn a_storage_is_checked_against_its_declared_size() {
    // Backed exactly: counted.
    let ok = count(
        one_storage(16),
        vec![("archive/data/0".into(), vec![0; 64])],
    );
    assert!(ok.is_ok(), "{ok:?}");
    // Declares 512 M floats (2 GiB) backed by 64 bytes: rejected before reading.
    let err = count(
        one_storage(512 << 20),
        vec![("archive/data/0".into(), vec![0; 64])],
    )
    .unwrap_err();
    assert!(err.contains("expected"), "{err}");
}
