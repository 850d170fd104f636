//! Real escapes and abuses against the real sandbox, through the real binary, warm and cold.

mod util;

use util::{exec, marker, pids_with, status};

/// Both execution paths must hold every property.
const MODES: &[&[&str]] = &[&[], &["--cold"]];

#[test]
fn hello_world_runs_warm_and_cold() {
    for mode in MODES {
        let r = exec(
            "import sys\nprint('hello', sys.argv[0].endswith('main.py'))\n",
            mode,
        );
        assert_eq!(status(&r), "ok", "{mode:?}: {r}");
        assert_eq!(r["stdout"], "hello True\n");
        assert_eq!(r["exit_code"], 0);
        assert!(r["wall_ms"].as_f64().unwrap() > 0.0);
        assert!(r["peak_rss_mb"].as_f64().unwrap() > 1.0, "{r}");
    }
}

#[test]
fn torch_training_snippet_runs() {
    let code = r#"
import torch
torch.manual_seed(0)
x = torch.randn(64, 4); y = (x.sum(1) > 0).float()
m = torch.nn.Linear(4, 1); opt = torch.optim.SGD(m.parameters(), lr=0.5)
for _ in range(50):
    opt.zero_grad(); loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x).squeeze(1), y); loss.backward(); opt.step()
print(f"LOSS {loss.item():.3f}")
"#;
    for mode in MODES {
        let r = exec(code, mode);
        assert_eq!(status(&r), "ok", "{r}");
        let loss: f64 = r["stdout"]
            .as_str()
            .unwrap()
            .trim()
            .strip_prefix("LOSS ")
            .unwrap()
            .parse()
            .unwrap();
        assert!(loss < 0.4, "{loss}");
    }
}

#[test]
fn errors_exit_codes_and_syntax_errors_are_reported() {
    for mode in MODES {
        let r = exec("raise ValueError('boom')\n", mode);
        assert_eq!(status(&r), "error");
        assert_eq!(r["exit_code"], 1);
        assert!(
            r["stderr"].as_str().unwrap().contains("ValueError: boom"),
            "{r}"
        );
        let r = exec("import sys\nsys.exit(7)\n", mode);
        assert_eq!((status(&r), r["exit_code"].as_i64()), ("error", Some(7)));
        let r = exec("def f(:\n  pass\n", mode);
        assert_eq!(status(&r), "error");
        assert!(r["stderr"].as_str().unwrap().contains("SyntaxError"), "{r}");
    }
}

#[test]
fn non_utf8_output_is_decoded_lossily() {
    for mode in MODES {
        let r = exec(
            "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')\n",
            mode,
        );
        assert_eq!(status(&r), "ok");
        assert_eq!(r["stdout"], "ok \u{FFFD}\u{FFFD} end\n");
    }
}

#[test]
fn network_is_refused_loopback_included() {
    let code = r#"
import socket
for host, port in [("127.0.0.1", 22), ("127.0.0.1", 8080), ("1.1.1.1", 80), ("::1", 22)]:
    try:
        socket.create_connection((host, port), timeout=2)
        print("CONNECTED", host)
    except OSError as e:
        print("refused", host, e.errno)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", ("8.8.8.8", 53)); print("SENT udp")
except OSError as e:
    print("refused udp", e.errno)
print(open("/proc/net/dev").read().count(":"), "interfaces")
"#;
    for mode in MODES {
        let r = exec(code, mode);
        assert_eq!(status(&r), "ok", "{r}");
        let out = r["stdout"].as_str().unwrap();
        assert!(!out.contains("CONNECTED") && !out.contains("SENT"), "{out}");
        assert_eq!(out.matches("refused").count(), 5, "{out}");
    }
}

#[test]
fn secrets_home_and_proctor_home_are_unreadable() {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let secret =
        std::path::Path::new(&home).join(format!(".proctor-test-secret-{}", std::process::id()));
    std::fs::write(&secret, "s3cret").unwrap();
    let proctor_home = proctor_runtime::proctor_home();
    let home_secret = proctor_home.join(format!("test-secret-{}", std::process::id()));
    std::fs::write(&home_secret, "s3cret").unwrap();
    let code = format!(
        r#"
for p in ["/etc/shadow", {secret:?}, {home_secret:?}, {home:?}, {ph:?}, "/root", "/var/log", "/sys/fs/cgroup"]:
    try:
        import os
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p).read()
        print("READ", p)
    except OSError as e:
        print("denied", p, e.errno)
"#,
        secret = secret.display().to_string(),
        home_secret = home_secret.display().to_string(),
        home = home,
        ph = proctor_home.display().to_string(),
    );
    for mode in MODES {
        let r = exec(&code, mode);
        assert_eq!(status(&r), "ok", "{r}");
        let out = r["stdout"].as_str().unwrap();
        assert!(!out.contains("READ"), "{mode:?}: {out}");
        assert_eq!(out.matches("denied").count(), 8, "{out}");
    }
    let _ = std::fs::remove_file(secret);
    let _ = std::fs::remove_file(home_secret);
}

#[test]
fn only_scratch_is_writable() {
    let code = r#"
import os
for p in ["/tmp/proctor-escape", "/usr/proctor-escape", "/etc/proctor-escape", "../proctor-escape", "inputs-escape/../../x", os.path.join(os.path.dirname(__file__), "planted.py")]:
    try:
        open(p, "w").write("x"); print("WROTE", p)
    except OSError as e:
        print("denied", e.errno)
open("scratch.txt", "w").write("fine"); print("scratch ok", open("scratch.txt").read())
"#;
    for mode in MODES {
        let r = exec(code, mode);
        assert_eq!(status(&r), "ok", "{r}");
        let out = r["stdout"].as_str().unwrap();
        assert!(!out.contains("WROTE"), "{out}");
        assert!(out.contains("scratch ok fine"), "{out}");
        assert!(!std::path::Path::new("/tmp/proctor-escape").exists());
    }
}

#[test]
fn privileged_syscalls_fail() {
    let code = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(ret):
    return ctypes.get_errno() if ret == -1 else 0
print("ptrace", errno_of(libc.ptrace(16, 1, 0, 0)))            # PTRACE_ATTACH to init
print("mount", errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
print("unshare", errno_of(libc.unshare(0x10000000)))           # CLONE_NEWUSER
print("unshare_net", errno_of(libc.unshare(0x40000000)))
print("setns", errno_of(libc.setns(0, 0)))
print("bpf", errno_of(libc.syscall(321, 0, 0, 0)))
print("perf", errno_of(libc.syscall(298, 0, 0, -1, -1, 0)))
print("keyctl", errno_of(libc.syscall(250, 0, 0, 0, 0, 0)))
print("chroot", errno_of(libc.chroot(b"/")))
caps = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
print("capeff", caps)
nnp = [l for l in open("/proc/self/status") if l.startswith("NoNewPrivs")][0].split()[1]
print("nnp", nnp)
"#;
    for mode in MODES {
        let r = exec(code, mode);
        assert_eq!(status(&r), "ok", "{r}");
        let out = r["stdout"].as_str().unwrap();
        for line in out.lines() {
            let (name, value) = line.split_once(' ').unwrap();
            match name {
                "capeff" => assert_eq!(value, "0000000000000000", "{out}"),
                "nnp" => assert_eq!(value, "1"),
                // EPERM, or for ptrace of a process outside the domain also EPERM/ESRCH
                _ => assert!(value == "1" || value == "3", "{name} not refused: {out}"),
            }
        }
    }
}

#[test]
fn memory_bombs_end_as_oom() {
    // Allocated all at once: refused by the kernel's overcommit check.
    for mode in MODES {
        let r = exec(
            "x = bytearray(50 * 2**30)\nprint('ALLOCATED')\n",
            &[&["--memory-mb", "512"], *mode].concat(),
        );
        assert_eq!(status(&r), "oom", "{r}");
    }
    // Touched gradually: stopped by the cgroup limit.
    let code = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 2**20))\n";
    for mode in MODES {
        let r = exec(
            code,
            &[&["--memory-mb", "600", "--timeout-s", "60"], *mode].concat(),
        );
        assert_eq!(status(&r), "oom", "{r}");
        assert!(
            r["stderr"].as_str().unwrap().contains("memory limit"),
            "{r}"
        );
    }
    // And the next run works.
    assert_eq!(status(&exec("print(1)", &[])), "ok");
}

#[test]
fn infinite_loop_times_out_and_leaves_no_process() {
    for mode in MODES {
        let m = marker();
        let code = format!(
            "import subprocess\nsubprocess.Popen(['/bin/sleep', '{m}'])\nwhile True:\n    pass\n"
        );
        let r = exec(&code, &[&["--timeout-s", "3"], *mode].concat());
        assert_eq!(status(&r), "timeout", "{r}");
        assert!(r["wall_ms"].as_f64().unwrap() < 15_000.0, "{r}");
        assert!(
            pids_with(&m).is_empty(),
            "processes left behind: {:?}",
            pids_with(&m)
        );
    }
}

/// A warm run's time limit and wall time count from its code's start: the warm pool's
/// start-up before a fresh `proctor exec`'s run (the zygote imports torch: seconds, more on
/// a loaded machine) is not the run's time (red team SBX-2: such runs were `timeout`).
#[test]
fn a_warm_run_s_clock_starts_with_its_code_not_the_pool_s_start_up() {
    let began = std::time::Instant::now();
    let r = exec("print('quick')\n", &["--timeout-s", "1.5"]);
    let took = began.elapsed().as_secs_f64();
    assert!(
        took > 1.5,
        "start-up took only {took:.2} s: this test shows nothing"
    );
    assert_eq!(status(&r), "ok", "{r}");
    assert_eq!(r["stdout"], "quick\n");
    let wall_s = r["wall_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        wall_s < 1.5,
        "wall {wall_s:.2} s of {took:.2} s in all: {r}"
    );
}

#[test]
fn sigterm_ignoring_double_forked_child_is_killed() {
    for mode in MODES {
        let m = marker();
        let code = format!(
            r#"
import os, signal
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.execv("/bin/sleep", ["sleep", "{m}"])
    os._exit(0)
print("parent done")
"#
        );
        let r = exec(&code, mode);
        assert_eq!(status(&r), "ok", "{r}");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            pids_with(&m).is_empty(),
            "daemon survived: {:?}",
            pids_with(&m)
        );
    }
}

/// A run is not the init of its pid namespace: signals keep their default actions (pid 1
/// ignores those it has no handler for) and the orphans of its children are not its own.
#[test]
fn a_run_dies_of_its_own_signals_and_adopts_no_orphans() {
    let die = |sig: &str| {
        format!("import os, signal, time\nsignal.signal(signal.{sig}, signal.SIG_DFL)\nos.kill(os.getpid(), signal.{sig})\ntime.sleep(5)\nprint('survived')\n")
    };
    let orphans = r#"
import os, time
child = os.fork()
if child == 0:
    if os.fork() == 0:
        time.sleep(0.3)
        os._exit(0)
    os._exit(0)
os.waitpid(child, 0)
time.sleep(1.5)
try:
    print("adopted", os.waitpid(-1, os.WNOHANG))
except ChildProcessError:
    print("no orphans")
"#;
    for mode in MODES {
        for sig in ["SIGTERM", "SIGINT", "SIGUSR1"] {
            let r = exec(&die(sig), mode);
            assert_eq!(
                (status(&r), &r["stdout"]),
                ("killed", &serde_json::json!("")),
                "{sig} {mode:?}: {r}"
            );
        }
        let r = exec(orphans, mode);
        assert_eq!(r["stdout"], "no orphans\n", "{mode:?}: {r}");
    }
}

#[test]
fn fork_bomb_is_contained() {
    let code =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    for mode in MODES {
        let r = exec(
            code,
            &[&["--timeout-s", "3", "--max-pids", "64"], *mode].concat(),
        );
        assert!(["timeout", "killed", "error"].contains(&status(&r)), "{r}");
        // The host is responsive and the next run works.
        let next = exec("print('alive')", mode);
        assert_eq!(next["stdout"], "alive\n");
    }
}

#[test]
fn huge_output_is_cut_at_the_limit() {
    let code =
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n";
    for mode in MODES {
        let r = exec(code, &[&["--max-output-bytes", "100000"], *mode].concat());
        assert_eq!(status(&r), "output_limit", "{}", r["stderr"]);
        assert_eq!(r["output_truncated"], true);
        assert_eq!(r["stdout"].as_str().unwrap().len(), 100_000);
        assert!(r["wall_ms"].as_f64().unwrap() < 30_000.0);
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = std::process::Command::new(util::proctor_bin())
        .args(["exec", "/nonexistent/script.py", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("/nonexistent/script.py") && msg.contains("existing Python file"),
        "{msg}"
    );
}

#[test]
fn exit_handlers_and_finalizers_of_the_run_still_run() {
    let code = "import atexit, weakref\nclass Box: pass\nb = Box()\nweakref.finalize(b, print, 'finalized')\natexit.register(print, 'atexit ran')\nprint('body')\n";
    for mode in MODES {
        let r = exec(code, mode);
        assert_eq!(status(&r), "ok", "{r}");
        let out = r["stdout"].as_str().unwrap();
        assert!(out.starts_with("body\n"), "{out}");
        assert!(
            out.contains("atexit ran\n") && out.contains("finalized\n"),
            "{mode:?}: {out}"
        );
    }
}
