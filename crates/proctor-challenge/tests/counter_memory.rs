//! Peak memory of the trusted counter on the issue's three bombs, measured in a process
//! of its own (this test binary holds this one test, so the process's high-water mark is
//! the counter's): each is rejected or counted, none takes more than a bounded amount of memory.

use std::io::Write;

use proctor_challenge::artifact::{count_and_rewrite, COUNT_TIME_BUDGET};

/// The process's peak resident memory so far, in MiB (Linux).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

fn archive(dir: &std::path::Path, entries: &[(&str, Vec<u8>)]) -> std::path::PathBuf {
    let path = dir.join("model.pt");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
    path
}

/// A pickle of one float storage of `numel` elements, as a tensor.
fn one_storage(numel: u32) -> Vec<u8> {
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage".to_vec();
    p.extend(b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ");
    p.extend(numel.to_le_bytes());
    p.extend(b"tQK\x00J");
    p.extend(numel.to_le_bytes());
    p.extend(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR.");
    p
}

/// An archive's entries: name and bytes.
type Entries = Vec<(&'static str, Vec<u8>)>;

#[test]
fn the_issue_s_bombs_are_rejected_in_bounded_memory() {
    // A million levels of nesting: the whole pickle allowance of TUPLE1.
    let mut deep = vec![0x80, 2, b']'];
    deep.extend(std::iter::repeat_n(0x85u8, (1 << 20) - 4));
    deep.push(b'.');
    // A 32,000-item list memoized, then builtins.list of it 6,600 times.
    let mut copies = vec![0x80, 2, b'('];
    copies.extend(std::iter::repeat_n(b'N', 32_000));
    copies.extend(b"lq\x00cbuiltins\nlist\nq\x010");
    for _ in 0..4_000 {
        copies.extend([b'h', 1, b'h', 0, 0x85, b'R', b'0']);
    }
    copies.extend(b"N.");
    // One storage declaring 2 GiB (512 M floats) on a deflated entry of zeros that
    // expands to less: a declared size its entry does not back is refused before reading.
    let bomb_entry = vec![0u8; 64 << 20];
    // (name, archive entries, the rejection)
    let cases: Vec<(&str, Entries, &str)> = vec![
        (
            "deep nesting",
            vec![("archive/data.pkl", deep)],
            "more than 4096 levels deep",
        ),
        (
            "memoized list copied",
            vec![("archive/data.pkl", copies)],
            "more than 4000000 items",
        ),
        (
            "declared-size bomb",
            vec![
                ("archive/data.pkl", one_storage(512 << 20)),
                ("archive/data/0", bomb_entry),
            ],
            "expected 2147483648",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, entries, want) in cases {
        let sub = dir.path().join(name.replace(' ', "_"));
        std::fs::create_dir(&sub).unwrap();
        files.push((
            name,
            archive(&sub, &entries),
            sub.join("canonical.pt"),
            want,
        ));
    }
    for (name, model, out, want) in files {
        // The high-water mark is reset (writing 5 to clear_refs): each case from here.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak_rss_mib();
        let r = count_and_rewrite(&model, &out, Default::default(), COUNT_TIME_BUDGET);
        let peak = peak_rss_mib();
        eprintln!("{name}: {r:?}, peak {peak} MiB (from {before} MiB)");
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
        assert!(
            peak < before + 256,
            "{name}: peak {peak} MiB from {before} MiB"
        );
    }
}
