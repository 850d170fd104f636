//! Hostile `model.pt` files: the trusted counter rejects or counts them without
//! crashing the caller, even on a tokio worker's 2 MiB stack, without allocating what a
//! storage merely declares, and within its work and time budgets.

use std::io::Write;
use std::time::Duration;

use proctor_challenge::artifact::{count_and_rewrite, count_pickle_bytes, COUNT_TIME_BUDGET};
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
    count_within(pickle, extra, COUNT_TIME_BUDGET)
}

/// [`count`] within `budget`.
fn count_within(
    pickle: Vec<u8>,
    extra: Vec<(String, Vec<u8>)>,
    budget: Duration,
) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut entries: Vec<(&str, &[u8])> = vec![("archive/data.pkl", &pickle)];
    entries.extend(extra.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    let path = archive(dir.path(), &entries);
    let out = dir.path().join("canonical.pt");
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || count_and_rewrite(&path, &out, Default::default(), budget))
        .unwrap()
        .join()
        .expect("the counter must not crash its caller")
        .map(|c| format!("{c:?}"))
        .map_err(|e| e.to_string())
}

/// EMPTY_LIST, then TUPLE1 `n` times: `n + 1` levels of nesting in `n` bytes.
fn tuples_around_a_list(n: usize) -> Vec<u8> {
    let mut p = vec![0x80, 2, b']'];
    p.extend(std::iter::repeat_n(0x85u8, n));
    p.push(b'.');
    p
}

#[test]
fn deep_nesting_is_refused_at_the_cap_without_overflowing_the_stack() {
    let at_cap = count(tuples_around_a_list(4095), vec![]);
    assert!(at_cap.is_ok(), "{at_cap:?}");
    for p in [
        tuples_around_a_list(4096),
        tuples_around_a_list(65_000),
        // The pickle's whole allowance: 1 MiB of TUPLE1.
        tuples_around_a_list((1 << 20) - 4),
        // Lists: 65,000 EMPTY_LIST, then APPEND each into the one below.
        [
            vec![0x80, 2],
            vec![b']'; 65_000],
            vec![b'a'; 64_999],
            vec![b'.'],
        ]
        .concat(),
        // Dicts: {0: {0: ...}} built by SETITEM.
        [
            vec![0x80, 2, b'}'],
            [b'K', 0, b'}'].repeat(64_999),
            vec![b's'; 64_999],
            vec![b'.'],
        ]
        .concat(),
    ] {
        let err = count(p, vec![]).unwrap_err();
        assert!(err.contains("more than 4096 levels deep"), "{err}");
    }
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

#[test]
fn storages_declaring_more_than_the_artifact_limit_are_refused_before_any_copy() {
    // 2 GiB + 4 bytes declared: deflated storages could expand to that many bytes (and
    // a pickle can declare many of them), so the total is refused before anything is read.
    let err = count(
        one_storage((512 << 20) + 1),
        vec![("archive/data/0".into(), vec![0; 64])],
    )
    .unwrap_err();
    assert!(err.contains("declare 2147483652 bytes in all"), "{err}");
}

#[test]
fn a_state_dict_shared_by_many_modules_exhausts_the_work_budget() {
    // One dict D of 6,000 items whose `_buffers` is D itself, set as the state of 5,400
    // modules: 63 KB of pickle, but reading every module's buffers is 5,400 × 12,000
    // entries. The walk is charged like the pickle machine.
    let mut p = vec![0x80, 2, b'}', b'q', 0, b'0']; // EMPTY_DICT, BINPUT 0, POP
    p.extend([b'X', 1, 0, 0, 0, b'k', b'q', 1, b'0']); // "k" as memo 1
    p.extend([b'h', 0, b'(']);
    for _ in 0..6_000 {
        p.extend([b'h', 1, b'h', 1]); // "k": "k"
    }
    p.extend([b'X', 8, 0, 0, 0]);
    p.extend(b"_buffers");
    p.extend([b'h', 0, b'u', b'0']); // "_buffers": D, SETITEMS, POP
    p.extend(b"ctorch.nn.modules.module\nModule\n");
    p.extend([b'q', 2, b'0', b']', b'(']);
    for _ in 0..5_400 {
        p.extend([b'h', 2, b')', 0x81, b'h', 0, b'b']); // Module(), BUILD with D
    }
    p.extend([b'e', b'.']);
    assert!(p.len() <= 64 << 10, "{} bytes", p.len());
    let err = count(p, vec![]).unwrap_err();
    assert!(err.contains("more than 4000000 items"), "{err}");
}

#[test]
fn counting_stops_at_its_time_budget() {
    // What the work budget lets through on a slow or loaded machine stops at the clock:
    // with no time at all, neither a bare pickle nor a whole archive gets counted.
    let e = count_pickle_bytes(&op(b"N"), Duration::ZERO).unwrap_err();
    assert!(
        e.to_string().contains("could not be counted within 0 s"),
        "{e}"
    );
    let backed = vec![("archive/data/0".to_string(), vec![0; 64])];
    let e = count_within(one_storage(16), backed.clone(), Duration::ZERO).unwrap_err();
    assert!(e.contains("could not be counted within 0 s"), "{e}");
    assert!(count_within(one_storage(16), backed, COUNT_TIME_BUDGET).is_ok());
}

#[test]
fn an_archive_of_too_many_entries_is_refused_before_it_is_indexed() {
    // Indexing a zip directory costs memory per entry: a 2 GiB file of empty entries
    // would cost gigabytes on the trusted side, so the entries are counted first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.pt");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("archive/data.pkl", opts).unwrap();
    w.write_all(&op(b"N")).unwrap();
    for i in 0..100_001 {
        w.start_file(format!("e{i}"), opts).unwrap();
    }
    w.finish().unwrap();
    let out = dir.path().join("canonical.pt");
    let e = count_and_rewrite(&path, &out, Default::default(), COUNT_TIME_BUDGET).unwrap_err();
    assert!(e.to_string().contains("more than 100000 entries"), "{e}");
}

#[test]
fn values_kept_in_the_pickled_structure_count_past_a_module_tree_s_needs() {
    let params = |body: &[u8]| count_pickle_bytes(&op(body), COUNT_TIME_BUDGET).unwrap();
    // 10,000 bytes of class means as a bytes attribute: 1 per byte past 4,096.
    let mut blob = vec![b'B'];
    blob.extend(10_000u32.to_le_bytes());
    blob.extend([7u8; 10_000]);
    let c = params(&blob);
    assert_eq!((c.params, c.pickled_values, c.other), (5_904, 5_904, 5_904));
    assert!(
        c.note
            .contains("5904 in values kept in the pickled structure"),
        "{}",
        c.note
    );
    // The same as a str: the same count.
    let mut text = vec![b'X'];
    text.extend(10_000u32.to_le_bytes());
    text.extend([b'a'; 10_000]);
    assert_eq!(params(&text).params, 5_904);
    // 5,000 numbers in a list, one memoized int referenced again and again: 1 per
    // number past 2,048 (and the int itself, built then popped, 1).
    let mut list = vec![b'K', 9, b'q', 0, b'0', b']', b'('];
    for _ in 0..5_000 {
        list.extend([b'h', 0]);
    }
    list.push(b'e');
    assert_eq!(params(&list).params, 2_953);
    // Marshalled code of a function exported by value is free up to 16 KiB in all (its
    // constants could carry data past that), counted once however often it is used.
    let code = |len: u32| {
        let mut p = b"cproctor_export\nmake_function\nq\x00\x30".to_vec();
        p.push(b'B');
        p.extend(len.to_le_bytes());
        p.extend(std::iter::repeat_n(0xe3, len as usize));
        p.extend(b"q\x01\x30]("); // memo 1, POP, a list of two functions of that code
        for _ in 0..2 {
            p.extend(b"h\x00(h\x01X\x01\x00\x00\x00mX\x01\x00\x00\x00fX\x01\x00\x00\x00fK\x00tR");
        }
        p.push(b'e');
        p
    };
    assert_eq!(params(&code(16 << 10)).params, 0);
    assert_eq!(params(&code(20_000)).params, 20_000 - (16 << 10));
    // What a module tree needs (a few names and settings) stays free.
    assert_eq!(params(b"(X\x08\0\0\0trainingK\x01d").params, 0);
}

/// `BINBYTES` of `n` bytes.
fn blob(n: u32) -> Vec<u8> {
    let mut b = vec![b'B'];
    b.extend(n.to_le_bytes());
    b.extend(std::iter::repeat_n(7u8, n as usize));
    b
}

/// `BINUNICODE` of `s`.
fn text(s: &str) -> Vec<u8> {
    let mut b = vec![b'X'];
    b.extend((s.len() as u32).to_le_bytes());
    b.extend(s.as_bytes());
    b
}

/// Ways to hide a weight matrix outside the counted tensors, one row each: the values
/// count (1 per byte of data, per number — per 32 bits, like tensor elements — and per list
/// or tuple item) however they are spread, wherever the pickle leaves them. Allowances
/// are per model: 4,096 bytes of strings and bytes, 2,048 numbers and items.
#[test]
fn hidden_capacity_counts_however_it_is_spread() {
    let concat = |parts: &[&[u8]]| parts.concat();
    let repeat = |n: usize, part: &[u8]| part.repeat(n);
    // One module holding `attrs` bytes attributes of `len` bytes each.
    let module = |attrs: usize, len: u32| {
        let mut p = b"cmod\nM\n)\x81}(".to_vec();
        for i in 0..attrs {
            p.extend(text(&format!("a{i:03}")));
            p.extend(blob(len));
        }
        p.extend(b"ub");
        p
    };
    let numpy_array = concat(&[
        b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\nK\x00\x85C\x01bt",
        b"R(K\x01M\xc4\x09\x85cnumpy\ndtype\n(X\x02\x00\x00\x00f4K\x00K\x01tR\x89",
        &blob(10_000),
        b"tb",
    ]);
    // 256 one-byte bytes objects memoized, then a list of 10,000 references to them:
    // 8 bits per 2-byte reference.
    let mut memo_refs = Vec::new();
    for i in 0..=255u8 {
        memo_refs.extend([b'C', 1, i, b'q', i, b'0']);
    }
    memo_refs.extend(b"](");
    for i in 0..10_000 {
        memo_refs.extend([b'h', (i * 7 % 256) as u8]);
    }
    memo_refs.push(b'e');
    // The same as dict values under 5,000 int keys (each key counts too).
    let mut dict_refs = memo_refs[..256 * 6].to_vec();
    dict_refs.extend(b"}(");
    for i in 0..5_000u16 {
        dict_refs.push(b'M');
        dict_refs.extend(i.to_le_bytes());
        dict_refs.extend([b'h', (i * 7 % 256) as u8]);
    }
    dict_refs.push(b'u');
    // ... and to 256 memoized empty lists: each reference after a list's first counts.
    let mut list_refs = Vec::new();
    for i in 0..=255u8 {
        list_refs.extend([b']', b'q', i, b'0']);
    }
    list_refs.extend(&dict_refs[256 * 6..]);
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        (
            "many bytes attributes, each small",
            module(100, 100),
            10_400 - 4_096,
        ),
        (
            "ten modules each under the allowance",
            concat(&[b"]", &repeat(10, &[&module(1, 1_000)[..], b"a"].concat())]),
            10 * 1_004 - 4_096,
        ),
        (
            "a tuple of floats (float64: 2 each)",
            concat(&[
                b"(",
                &repeat(3_000, b"G\x3f\xf0\x00\x00\x00\x00\x00\x00"),
                b"t",
            ]),
            6_000 - 2_048,
        ),
        (
            "a dict of numbers",
            concat(&[b"}(", &repeat(1_500, b"M\x01\x02M\x03\x04"), b"u"]),
            3_000 - 2_048,
        ),
        (
            "ints wider than 32 bits (2 each)",
            concat(&[b"(", &repeat(3_000, b"\x8a\x05\x01\x02\x03\x04\x05"), b"l"]),
            6_000 - 2_048,
        ),
        (
            "one 20,000-byte integer",
            concat(&[b"\x8b\x20\x4e\x00\x00", &[1u8; 20_000]]),
            20_000 - 4_096,
        ),
        (
            "integers of 255 bytes in a list",
            concat(&[
                b"(",
                &repeat(100, &[&[0x8a, 255][..], &[1u8; 255]].concat()),
                b"l",
            ]),
            25_500 - 4_096,
        ),
        (
            "a numpy array pickled via reduce",
            numpy_array,
            10_000 + 3 - 4_096,
        ),
        (
            "a list of references to 256 memoized values",
            memo_refs,
            10_000 - 2_048,
        ),
        (
            "a dict of numbers to references to 256 memoized values",
            dict_refs,
            2 * 5_000 - 2_048,
        ),
        (
            "a dict of numbers to references to 256 memoized lists",
            list_refs,
            2 * 5_000 - 256 - 2_048,
        ),
    ];
    // 10,000 bytes of data between `before` and `after`, with `names` bytes of strings.
    let around_blob: [(&str, &[u8], &[u8], u64); 7] = [
        (
            "a class attribute set by set_class_state, then popped",
            b"cproctor_export\nset_class_state\ncmod\nC\n}X\x05\x00\x00\x00table",
            b"s\x86R0N",
            5,
        ),
        (
            "arguments of an object's constructor",
            b"cmod\nC\n",
            b"\x85\x81",
            0,
        ),
        (
            "arguments of a callable that is not a global",
            b"cmod\nC\n)\x81",
            b"\x85R",
            0,
        ),
        ("left on the stack under the root", b"", b"N", 0),
        (
            "popped after a reduce",
            b"cbuiltins\nsetattr\n(cmod\nC\nX\x01\x00\x00\x00w",
            b"tR0N",
            1,
        ),
        ("state of a non-object", b")", b"bN", 0),
        (
            "the second argument of dict()",
            b"cbuiltins\ndict\n]",
            b"\x86R",
            0,
        ),
    ];
    let cases = cases
        .into_iter()
        .chain(around_blob.map(|(name, before, after, names)| {
            (
                name,
                concat(&[before, &blob(10_000), after]),
                10_000 + names - 4_096,
            )
        }));
    for (name, body, expected) in cases {
        let pickle = op(&body);
        assert!(pickle.len() <= 64 << 10, "{name}: {} bytes", pickle.len());
        let c = count_pickle_bytes(&pickle, COUNT_TIME_BUDGET)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (c.pickled_values, c.params),
            (expected, expected),
            "{name}: {}",
            c.note
        );
    }
}

/// A tensor's state and a parameter's hooks and state are kept by torch.load on the
/// tensor (attributes): values there count like anywhere else.
#[test]
fn state_kept_on_a_parameter_counts() {
    let tensor = one_storage(16);
    let tensor = &tensor[2..tensor.len() - 1];
    let mut p = vec![0x80, 2];
    p.extend(b"ctorch._utils\n_rebuild_parameter_with_state\n(");
    p.extend(tensor);
    p.extend(b"\x88ccollections\nOrderedDict\n)R}");
    p.extend(text("blob"));
    p.extend(blob(10_000));
    p.extend(b"stR.");
    let r = count(p, vec![("archive/data/0".into(), vec![0; 64])]).unwrap();
    assert!(r.contains("pickled_values: 5908,"), "{r}");
    assert!(r.contains("params: 5924,"), "{r}");
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
