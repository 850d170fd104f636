//! The real runtime install, against the shared proctor home.
//!
//! Runs only when `PROCTOR_HOME` is set (CI sets it, and reuses the runtime
//! across runs); otherwise it says so and passes, so that `cargo test` never
//! downloads gigabytes into a developer's cache unasked.

use std::process::Command;
use std::time::{Duration, Instant};

use proctor_runtime::{ensure, find, EnsureOptions, MARKER_FILE};

#[test]
fn real_runtime_installs_and_imports_torch() {
    let Some(home) = std::env::var_os("PROCTOR_HOME").filter(|h| !h.is_empty()) else {
        eprintln!(
            "skipping the real runtime install test: set PROCTOR_HOME to a shared directory \
             to run it (it installs ~5 GB the first time)"
        );
        return;
    };
    let opts = EnsureOptions {
        home: home.into(),
        quiet: false,
    };
    let runtime = ensure(&opts).expect("install the runtime");
    assert!(runtime.root.join(MARKER_FILE).is_file());
    assert!(runtime.site_packages().join("torch").is_dir());
    assert!(
        runtime.torch_version.starts_with("2.4.1"),
        "{}",
        runtime.torch_version
    );
    assert!(runtime.python_version.starts_with("3.11."));
    let base = runtime
        .base_prefix()
        .expect("pyvenv.cfg names the base python");
    let target = std::fs::canonicalize(&runtime.python).expect("bin/python resolves");
    assert!(
        target.starts_with(std::fs::canonicalize(&base).unwrap()),
        "{target:?} not in {base:?}"
    );

    let out = Command::new(&runtime.python)
        .args(["-c", "import torch, numpy, yaml; print(torch.__version__)"])
        .output()
        .expect("run the runtime's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        runtime.torch_version
    );

    // Present now: both checks are no-ops.
    let started = Instant::now();
    assert_eq!(find(&opts.home).as_ref(), Some(&runtime));
    assert_eq!(ensure(&opts).unwrap(), runtime);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(100),
        "no-op find + ensure took {elapsed:?}"
    );
}
