//! The engine as a library: warm runs, isolation between concurrent runs, persistent sessions.

mod util;

use std::time::{Duration, Instant};

use proctor_core::{Command, Job, Limits, OutputTap, Status};
use proctor_engine::Backend;

fn code(c: &str) -> Job {
    Job::new(Command::Code { code: c.into() }).with_limits(Limits {
        timeout_ms: 30_000,
        ..Limits::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_cannot_see_each_other() {
    let backend = util::backend().await;
    backend.warm_up().await.unwrap();
    let secret = format!("secret-{}", std::process::id());
    let marker = format!("a-input-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let a = {
        let b = backend.clone();
        let s = secret.clone();
        let input = dir.path().join("a.txt");
        let marker = marker.clone();
        tokio::spawn(async move {
            b.run(
                code(&format!(
                    "import os, time\nopen('secret.txt','w').write({s:?})\nprint(os.getcwd())\ntime.sleep(4)\n"
                ))
                .with_input(input, marker),
            )
            .await
        })
    };
    // Find A's scratch from the trusted side (its mount point on the host: what A writes
    // lives in a tmpfs of its own, never on the host's disk) by A's uniquely named input
    // (warm inputs live in `<pool>-inputs/<run>/`, the scratch in `<pool>/<run>/work`),
    // then let B try to read it.
    let runs = backend.config().home.join("runs");
    let mut input = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        input = find_file(&runs, &marker);
        if input.is_some() {
            break;
        }
    }
    let input = input.expect("A's input appears");
    let run_dir = input.parent().unwrap();
    let pool = run_dir
        .parent()
        .unwrap()
        .to_string_lossy()
        .replace("-inputs", "");
    let work = std::path::Path::new(&pool)
        .join(run_dir.file_name().unwrap())
        .join("work");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(work.is_dir(), "{} is not A's scratch", work.display());
    let target = work.join("secret.txt");
    assert!(!target.exists(), "A's file is on the host's disk");
    let probe = format!(
        r#"
import os
out = []
for attempt in [lambda: open({t:?}).read(), lambda: os.listdir({d:?}), lambda: os.listdir('/proc'), lambda: os.listdir('..')]:
    try:
        out.append('LEAK ' + str(attempt())[:40])
    except OSError as e:
        out.append('denied %d' % e.errno)
print(' | '.join(out))
mine = os.getpid()
seen = []
for pid in range(1, 200):
    if pid != mine and os.path.exists('/proc/%d/status' % pid):
        try:
            open('/proc/%d/status' % pid).read(); seen.append(pid)
        except OSError:
            pass
print('siblings readable:', seen)
"#,
        t = target.display().to_string(),
        d = target.parent().unwrap().display().to_string()
    );
    let b = backend.run(code(&probe)).await.unwrap();
    assert_eq!(b.status, Status::Ok, "{b:?}");
    assert!(!b.stdout.contains("LEAK"), "{}", b.stdout);
    assert!(!b.stdout.contains(&secret), "{}", b.stdout);
    assert!(b.stdout.contains("siblings readable: []"), "{}", b.stdout);
    let a = a.await.unwrap().unwrap();
    assert_eq!(a.status, Status::Ok, "{a:?}");
    // A's scratch is gone once A is done.
    assert!(!target.exists());
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() && !p.is_symlink() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_readable_and_read_only() {
    let backend = util::backend().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "41").unwrap();
    let job = code("v = int(open('../inputs/data.txt').read())\nprint(v + 1)\ntry:\n    open('../inputs/data.txt', 'w')\n    print('WRITABLE')\nexcept OSError:\n    print('read-only')\n")
        .with_input(dir.path().join("data.txt"), "data.txt");
    for cold in [false, true] {
        let r = backend.run(job.clone().cold(cold)).await.unwrap();
        assert_eq!(r.stdout, "42\nread-only\n", "{r:?}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data.txt")).unwrap(),
        "41"
    );
    // Collected scratch: what the run wrote, copied out to the trusted side (warm and
    // cold) — files and directories, never a link (it would be followed on the host).
    for cold in [false, true] {
        let out = dir.path().join(format!("collected-{cold}"));
        let r = backend
            .run(
                code("import os\nopen('model.txt', 'w').write('weights')\nos.mkdir('sub')\nopen('sub/x', 'w').write('x')\nos.symlink('/etc/shadow', 'leak')")
                    .cold(cold)
                    .collect_into(&out),
            )
            .await
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            std::fs::read_to_string(out.join("model.txt")).unwrap(),
            "weights"
        );
        assert_eq!(std::fs::read_to_string(out.join("sub/x")).unwrap(), "x");
        assert!(std::fs::symlink_metadata(out.join("leak")).is_err());
    }
    let missing = backend
        .run(code("print(1)").with_input("/nonexistent/data.bin", "data.bin"))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/data.bin"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_state_and_survive_errors_and_timeouts() {
    let backend = util::backend().await;
    let s = backend
        .open_session(Limits::default(), Duration::from_secs(60))
        .await
        .unwrap();
    let r = s
        .exec(
            "import torch\nx = torch.arange(6.).reshape(2, 3)\nprint('made')\nx.sum().item()",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.stdout.as_str(), r.value.as_deref()),
        (Status::Ok, "made\n", Some("15.0")),
        "{r:?}"
    );
    let r = s.exec("x.shape", Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.value.as_deref(), Some("torch.Size([2, 3])"));
    let r = s.exec("1 / 0", Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.status, Status::Error);
    assert!(r.stderr.contains("ZeroDivisionError"), "{r:?}");
    let r = s
        .exec(
            "import os\nos.write(2, b'c-level\\n')\nprint('py')",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str()),
        ("py\n", "c-level\n")
    );
    // Interruptible overrun: the session lives on.
    let r = s
        .exec("while True:\n    pass", Duration::from_millis(500))
        .await
        .unwrap();
    assert!(r.timed_out && r.session_alive, "{r:?}");
    let r = s
        .exec("x.mean().item()", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.value.as_deref(), Some("2.5"));
    // Stuck where Python cannot interrupt it: the session is killed, and says so.
    let r = s
        .exec(
            "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\ntime.sleep(60)",
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Status::Timeout, "{r:?}");
    assert!(!r.session_alive && !s.is_alive());
    let err = s.exec("1", Duration::from_secs(1)).await.unwrap_err();
    assert!(err.to_string().contains("open a new one"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_on_idle_and_on_oom() {
    let backend = util::backend().await;
    let idle = backend
        .open_session(Limits::default(), Duration::from_millis(500))
        .await
        .unwrap();
    idle.exec("a = 1", Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!idle.is_alive(), "idle session freed");
    let limits = Limits {
        memory_mb: 400,
        ..Limits::default()
    };
    let s = backend
        .open_session(limits, Duration::from_secs(60))
        .await
        .unwrap();
    let r = s
        .exec(
            "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 2**20))",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(r.status, Status::Oom), "{r:?}");
    // Another session is unaffected.
    let other = backend
        .open_session(Limits::default(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        other
            .exec("6 * 7", Duration::from_secs(5))
            .await
            .unwrap()
            .value
            .as_deref(),
        Some("42")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_restarts_a_dead_zygote() {
    let backend = util::backend().await;
    backend.warm_up().await.unwrap();
    let zygote = backend.zygote_pid().await.expect("a zygote runs");
    // SAFETY: kill(2) of the zygote this test's backend started.
    unsafe { libc_kill(zygote) };
    // The pool learns of the death when the zygote's socket closes, after the kernel has torn
    // down its memory: on a loaded machine that takes longer than any fixed pause (300 ms
    // failed at loadavg 15); a run sent before then goes to the dying zygote's spare.
    let noticed = Instant::now();
    while backend.zygote_pid().await == Some(zygote) {
        assert!(
            noticed.elapsed() < Duration::from_secs(60),
            "the death went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = backend.run(code("print('after restart')")).await.unwrap();
    assert_eq!(r.stdout, "after restart\n", "{r:?}");
    let restarted = backend.zygote_pid().await.expect("a new zygote runs");
    assert_ne!(restarted, zygote);
}

unsafe fn libc_kill(pid: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    kill(pid, 9);
}

/// A warm run's end is reported by its reaper (the fork of the zygote that waits for the
/// run), not by the zygote: a zygote that is stopped, or busy forking, holds no result
/// back. The run's cgroup and directories are released after the result, off its path,
/// and are gone soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_run_ends_on_its_reaper_s_report_and_is_released_after() {
    let backend = util::backend().await;
    backend.warm_up().await.unwrap();
    let zygote = backend.zygote_pid().await.expect("a zygote runs");
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let tap = OutputTap::new(move |_, chunk| {
        if String::from_utf8_lossy(chunk).contains("started") {
            if let Some(tx) = started_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    });
    let job = code("import os, sys, time\ncg = [l.rsplit('/', 1)[1] for l in open('/proc/self/cgroup') if '/run-' in l][0].strip()\nprint(cg, os.getcwd())\nprint('started', flush=True)\ntime.sleep(1)\nsys.exit(3)\n")
        .with_output_tap(tap);
    let b = backend.clone();
    let run = tokio::spawn(async move { b.run(job).await });
    tokio::time::timeout(Duration::from_secs(120), started)
        .await
        .expect("the run starts")
        .unwrap();
    // SAFETY: kill(2) of the zygote this test's backend started; continued below.
    unsafe { libc::kill(zygote, libc::SIGSTOP) };
    let r = tokio::time::timeout(Duration::from_secs(60), run).await;
    // SAFETY: as above.
    unsafe { libc::kill(zygote, libc::SIGCONT) };
    let r = r
        .expect("the result came while the zygote was stopped")
        .unwrap()
        .unwrap();
    assert_eq!(r.exit_code, Some(3), "{r:?}");
    let (cgroup, work) = r.stdout.lines().next().unwrap().split_once(' ').unwrap();
    let run_dir = std::path::Path::new(work).parent().unwrap().to_path_buf();
    let waiting = Instant::now();
    while run_dir.exists() || !find_cgroups(cgroup).is_empty() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "not released: {} {:?}",
            run_dir.display(),
            find_cgroups(cgroup)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pool goes on.
    let r = backend.run(code("print('next')")).await.unwrap();
    assert_eq!(r.stdout, "next\n", "{r:?}");
}

/// Directories named `name` in the host's cgroup hierarchies (a few levels deep).
fn find_cgroups(name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    for _ in 0..6 {
        let mut next = Vec::new();
        for dir in level {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if entry.file_name() == name {
                        found.push(entry.path());
                    }
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    found
}
