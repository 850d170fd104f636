//! Embeds `tasks/debug/*/` so that the binary carries its tasks.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // Read at run time, not with env!(): a build script compiled in another checkout (a
    // target dir copied from it) would otherwise keep embedding that checkout's tasks.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../../tasks/debug");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::from("/// (slug, [(file name, contents)]) of every embedded task.\npub const EMBEDDED: &[(&str, &[(&str, &str)])] = &[\n");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .map(|r| r.flatten().filter(|e| e.path().is_dir()).collect())
        .unwrap_or_default();
    dirs.sort_by_key(|e| e.file_name());
    for dir in dirs {
        println!("cargo:rerun-if-changed={}", dir.path().display());
        let slug = dir.file_name().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .collect();
        files.sort_by_key(|e| e.file_name());
        writeln!(out, "    ({slug:?}, &[").unwrap();
        for f in files {
            let name = f.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".py") || name.ends_with(".toml")) {
                continue;
            }
            println!("cargo:rerun-if-changed={}", f.path().display());
            let path = std::fs::canonicalize(f.path()).unwrap();
            writeln!(
                out,
                "        ({name:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded_tasks.rs");
    std::fs::write(dest, out).unwrap();
}
