//! Find or install the runtime and print it as JSON, with timings.
//!
//! ```text
//! PROCTOR_HOME=/path/to/home cargo run -p proctor-runtime --example ensure [--quiet]
//! ```

use std::time::Instant;

fn main() {
    let quiet = std::env::args().any(|a| a == "--quiet");
    let opts = proctor_runtime::EnsureOptions {
        quiet,
        ..Default::default()
    };
    let started = Instant::now();
    let found = proctor_runtime::find(&opts.home);
    eprintln!(
        "find: {:?} ({})",
        started.elapsed(),
        if found.is_some() { "present" } else { "absent" }
    );
    let started = Instant::now();
    match proctor_runtime::ensure(&opts) {
        Ok(runtime) => {
            eprintln!("ensure: {:?}", started.elapsed());
            println!(
                "{}",
                serde_json::to_string_pretty(&runtime).expect("serialize")
            );
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    }
}
