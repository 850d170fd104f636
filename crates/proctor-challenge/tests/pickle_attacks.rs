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

/// `PROTO 2`, `body`, `STOP`.
fn op(body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend(body);
    p.push(b'.');
    p
}

/// Every opcode the counter reads, and every one it refuses, one row each (as a parser's
/// table of cases): `Ok` when the pickle is counted (no storages: 0 parameters), else
/// a substring of the rejection.
#[test]
fn each_opcode_is_read_or_refused() {
    let long8 = |op: u8, n: u64| [&[op][..], &n.to_le_bytes()[..]].concat();
    let cases: Vec<(&str, Vec<u8>, Result<(), &str>)> = vec![
        ("FRAME", op(&long8(0x95, 1)), Err("underflow")),
        ("NONE", op(b"N"), Ok(())),
        ("NEWTRUE/NEWFALSE", op(&[0x88, b'0', 0x89]), Ok(())),
        ("BININT/1/2", op(b"J\x01\x00\x00\x80K\x07M\xff\xff000N"), Ok(())),
        ("LONG1/LONG4", op(b"\x8a\x02\xff\x7f\x8b\x01\x00\x00\x00\x05\x85"), Ok(())),
        ("BINFLOAT", op(b"G\x3f\xf0\x00\x00\x00\x00\x00\x00"), Ok(())),
        ("BINUNICODE*", op(b"X\x01\x00\x00\x00a\x8c\x01b\x8d\x01\x00\x00\x00\x00\x00\x00\x00c\x87"), Ok(())),
        ("BINSTRING*", op(b"T\x01\x00\x00\x00aU\x01b\x86"), Ok(())),
        ("BINBYTES*", op(b"B\x01\x00\x00\x00aC\x01b\x8e\x01\x00\x00\x00\x00\x00\x00\x00c\x96\x00\x00\x00\x00\x00\x00\x00\x00(t"), Ok(())),
        ("lists", op(b"]N\x61(NNe(Nl\x85"), Ok(())),
        ("tuples", op(b")(Nt\x86"), Ok(())),
        ("dicts", op(b"}KaKbs(KcKdu(KeKfd\x86"), Ok(())),
        ("sets", op(b"\x8f(N\x90(N\x91\x86"), Ok(())),
        ("memo", op(b"Nq\x01r\x02\x00\x00\x00\x94h\x01j\x02\x00\x00\x00\x87"), Ok(())),
        ("DUP/POP/POP_MARK", op(b"N2\x30(NN1"), Ok(())),
        // Cycles (a list holding itself, a dict inside itself): read, then broken when
        // the counter finishes (the fuzzer's leak sanitizer found they leaked).
        ("self-referencing containers", op(b"]2\x61\x30}q\x00Kah\x00s"), Ok(())),
        ("GLOBAL/STACK_GLOBAL/REDUCE", op(b"cmod\nname\n)R\x8c\x01m\x8c\x01n\x93)R\x86"), Ok(())),
        ("NEWOBJ/NEWOBJ_EX/BUILD", op(b"cmod\nC\n)\x81}b\x8c\x01m\x8c\x01n\x93)}\x92\x86"), Ok(())),
        // Refused: text-protocol and buffer opcodes torch.save never writes.
        ("INT", op(b"I1\n"), Err("unsupported pickle opcode 0x49")),
        ("FLOAT", op(b"F1.0\n"), Err("unsupported pickle opcode 0x46")),
        ("STRING", op(b"S'a'\n"), Err("unsupported pickle opcode 0x53")),
        ("PERSID", op(b"P0\n"), Err("unsupported pickle opcode 0x50")),
        ("INST", op(b"(imod\nC\n"), Err("unsupported pickle opcode 0x69")),
        ("OBJ", op(b"(cmod\nC\no"), Err("unsupported pickle opcode 0x6f")),
        ("EXT1", op(b"\x82\x01"), Err("unsupported pickle opcode 0x82")),
        ("NEXT_BUFFER", op(b"\x97"), Err("unsupported pickle opcode 0x97")),
        // Attacks on the reader itself.
        ("huge u64 length", op(&long8(0x8d, u64::MAX)), Err("truncated")),
        ("huge u32 length", op(b"X\xff\xff\xff\xff"), Err("truncated")),
        ("no STOP", vec![0x80, 2, b'N'], Err("truncated")),
        ("empty stack", op(b""), Err("underflow")),
        ("POP_MARK without MARK", op(b"N1"), Err("MARK missing")),
        ("missing memo", op(b"h\x05"), Err("memo 5 missing")),
        ("memo of nothing", op(b"q\x00"), Err("memo of an empty stack")),
        ("APPEND to a tuple", op(b")N\x61"), Err("APPEND to a non-list")),
        ("odd dict items", op(b"}(Nu"), Err("odd number")),
        ("STACK_GLOBAL of ints", op(b"K\x01K\x02\x93"), Err("two strings")),
        ("persistent id not a tuple", op(b"NQ"), Err("not a tuple")),
        ("unknown storage type", op(b"(X\x07\x00\x00\x00storagecmod\nT\nX\x01\x00\x00\x00aX\x03\x00\x00\x00cpuK\x01tQ"), Err("storage type")),
    ];
    for (name, pickle, expected) in cases {
        let got = count(pickle, vec![]);
        match (&got, expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) if e.contains(want) => {}
            _ => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn tensors_must_fit_their_storage_and_keep_one_size() {
    // The storage holds 16 floats; a (17,) view of it reaches past.
    let mut past = one_storage(16);
    let size = [b'J', 16, 0, 0, 0, 0x85];
    let at = past.windows(6).position(|w| w == size).unwrap();
    past[at + 1] = 17;
    let err = count(past, vec![("archive/data/0".into(), vec![0; 64])]).unwrap_err();
    assert!(err.contains("reaches past its storage"), "{err}");
}
