//! `proctor doctor`: what this machine offers the sandbox and the runtime.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::JsonArg;

pub fn run(args: JsonArg) -> Result<ExitCode> {
    let sandbox = proctor_sandbox::doctor();
    let home = proctor_runtime::proctor_home();
    let runtime = proctor_runtime::find(&home);
    let ready = sandbox.ready();
    let report = serde_json::json!({
        "proctor_version": env!("CARGO_PKG_VERSION"),
        "home": home,
        "sandbox": sandbox,
        "sandbox_ready": ready,
        "runtime": runtime,
        "runtime_installed": runtime.is_some(),
    });
    if args.json {
        super::print_json(&report)?;
    } else {
        println!("proctor {}", env!("CARGO_PKG_VERSION"));
        println!("home:        {}", home.display());
        println!("kernel:      {}", sandbox.kernel);
        println!("root:        {}", sandbox.root);
        println!("landlock:    ABI {}", sandbox.landlock_abi);
        println!("seccomp:     {}", sandbox.seccomp);
        println!("namespaces:  {}", sandbox.namespaces);
        println!("isolation:");
        for line in &sandbox.isolation {
            println!("  - {line}");
        }
        match &sandbox.cgroup {
            Some(cg) => {
                println!("cgroups:     {:?}", cg.version);
                for (controller, dir) in &cg.parents {
                    println!("  {controller:<9} {}", dir.display());
                }
            }
            None => println!("cgroups:     unusable"),
        }
        match &runtime {
            Some(rt) => println!(
                "runtime:     {} (python {}, torch {}) at {}",
                rt.id,
                rt.python_version,
                rt.torch_version,
                rt.root.display()
            ),
            None => println!("runtime:     not installed (run `proctor runtime ensure`)"),
        }
        if ready {
            println!("sandbox:     ready");
        } else {
            println!("sandbox:     NOT ready");
            for p in &sandbox.problems {
                println!("  - {p}");
            }
        }
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
