//! Attacks a red-team pass found (issue 14), each replayed against the real engine and binary:
//! they must fail, and proctor must stay up and clean.

mod util;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proctor_core::{Command, Job, Limits, Status};
use proctor_engine::{Backend, MAX_FRAME_BYTES};

/// Both execution paths must hold every property.
const MODES: &[&[&str]] = &[&[], &["--cold"]];

fn runs_dir() -> PathBuf {
    proctor_runtime::proctor_home().join("runs")
}

/// Whether a file or directory called `name` is anywhere within two levels of a run directory.
fn left_on_disk(name: &str) -> bool {
    let Ok(runs) = std::fs::read_dir(runs_dir()) else {
        return false;
    };
    runs.flatten().any(|run| {
        let direct = run.path().join("work").join(name);
        let nested = std::fs::read_dir(run.path())
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().join("work").join(name).exists())
            })
            .unwrap_or(false);
        direct.exists() || nested
    })
}

fn wait_until_gone(name: &str) {
    let start = Instant::now();
    while left_on_disk(name) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} is still on disk"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deep enough that a recursive removal runs out of file descriptors (the soft limit is
/// 1,024) or stack (the issue's server crash was at 20,000).
const DEPTH: usize = 25_000;

/// [`util::deep_chain`] takes seconds on a quiet 2-core machine; a loaded one (CI shared
/// with builds) is much slower. The limit is generous on purpose: what is tested is the
/// removal, not the build.
const BUILD_LIMIT_S: u64 = 600;

#[test]
fn a_deep_directory_chain_is_removed_after_exec() {
    for mode in MODES {
        let top = format!("deep-{}", util::marker());
        let r = util::exec(
            &util::deep_chain(&top, DEPTH),
            &[&["--timeout-s", &BUILD_LIMIT_S.to_string()], *mode].concat(),
        );
        assert_eq!(util::status(&r), "ok", "{mode:?}: {r}");
        assert_eq!(r["stdout"], "built\n");
        wait_until_gone(&top);
    }
    // The engine still starts (its sweep of stale runs walks the same kind of trees).
    let r = util::exec("print('alive')\n", &[]);
    assert_eq!(r["stdout"], "alive\n", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_chain_left_by_a_closed_session_is_removed_without_harm() {
    let backend = util::backend().await;
    let session = backend
        .open_session(Limits::default(), Duration::from_secs(60))
        .await
        .unwrap();
    let top = format!("deep-{}", util::marker());
    let r = session
        .exec(
            &util::deep_chain(&top, DEPTH),
            Duration::from_secs(BUILD_LIMIT_S),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    session.close().await;
    drop(session);
    tokio::task::spawn_blocking(move || wait_until_gone(&top))
        .await
        .unwrap();
    let r = backend
        .run(Job::new(Command::Code {
            code: "print('still serving')".into(),
        }))
        .await
        .unwrap();
    assert_eq!(r.stdout, "still serving\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snippet_at_the_frame_limit_works_and_one_over_gets_a_clear_error() {
    let backend = util::backend().await;
    let session = backend
        .open_session(Limits::default(), Duration::from_secs(60))
        .await
        .unwrap();
    // Plain ASCII: the encoded call is the snippet plus ~100 bytes of envelope.
    let fitting = format!("x = '{}'\nlen(x)", "a".repeat(MAX_FRAME_BYTES - 400));
    let r = session
        .exec(&fitting, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(
        r.value.as_deref(),
        Some(&*(MAX_FRAME_BYTES - 400).to_string())
    );
    // A legal-looking 150 KB snippet that JSON escaping doubles past the frame.
    let escaped = format!("x = '''{}'''\nlen(x)", "\"\\".repeat(75_000));
    let err = session
        .exec(&escaped, Duration::from_secs(30))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("too large") && err.contains(&MAX_FRAME_BYTES.to_string()),
        "{err}"
    );
    assert!(session.is_alive());
    let r = session
        .exec("len(x)", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        r.value.as_deref(),
        Some(&*(MAX_FRAME_BYTES - 400).to_string())
    );
    // A reply with a huge error (a syntax error on a near-limit line) still arrives.
    let broken = format!("x = ('{}'", "b".repeat(MAX_FRAME_BYTES - 400));
    let r = session
        .exec(&broken, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Error, "{r:?}");
    assert!(r.session_alive);
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gets_one_core_and_what_a_call_leaves_running_is_killed() {
    let backend = util::backend().await;
    let session = backend
        .open_session(Limits::default(), Duration::from_secs(60))
        .await
        .unwrap();
    // Two busy processes for 1.5 s of wall time: with one core they share it.
    let busy = r#"
import multiprocessing as mp, time
def spin(q):
    end = time.time() + 1.5
    while time.time() < end:
        pass
    q.put(time.process_time())
q = mp.get_context("fork").Queue()
start = time.time()
ps = [mp.get_context("fork").Process(target=spin, args=(q,)) for _ in range(2)]
for p in ps: p.start()
cpu = q.get() + q.get()
for p in ps: p.join()
round(cpu / (time.time() - start), 2)
"#;
    let r = session.exec(busy, Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let ratio: f64 = r.value.as_deref().unwrap().parse().unwrap();
    assert!(ratio < 1.3, "two spinning processes used {ratio} cores");
    // Leftovers: a child and a double-forked grandchild spinning after the call returns.
    let marker = util::marker();
    let leave = format!(
        "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import os, time\\nif os.fork() == 0:\\n    os.setsid()\\nwhile True: time.sleep(0)', '{marker}'])\nimport time\ntime.sleep(0.5)\n'started'"
    );
    let r = session.exec(&leave, Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(
        util::pids_with(&marker).is_empty(),
        "leftovers survived the call"
    );
    let r = session
        .exec("1 + 1", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r.value.as_deref(), Some("2"), "{r:?}");
    session.close().await;
}

/// Mode, owner, mtime and whether our xattr is set: what the attack tries to change.
fn fingerprint(path: &Path) -> (u32, u32, std::time::SystemTime, bool) {
    let meta = std::fs::metadata(path).unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: size query of an xattr with valid C strings.
    let xattr = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c"user.proctor".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    } >= 0;
    (
        meta.permissions().mode(),
        std::os::unix::fs::MetadataExt::uid(&meta),
        meta.modified().unwrap(),
        xattr,
    )
}

#[test]
fn host_files_sockets_and_the_harness_are_out_of_reach() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root's\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A real host binary; restored below should the attack ever get through.
    let binary = ["/usr/bin/true", "/bin/true"]
        .iter()
        .find_map(|p| std::fs::canonicalize(p).ok())
        .expect("a `true` binary");
    let mut sockets = Vec::new();
    for (name, mode) in [("open.sock", 0o666), ("closed.sock", 0o600)] {
        let path = dir.path().join(name);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        sockets.push((path, listener));
    }
    let socket_paths: Vec<&Path> = sockets.iter().map(|(p, _)| p.as_path()).collect();
    let script = dir.path().join("attack.py");
    std::fs::write(
        &script,
        util::host_world_attack(&[&victim, &binary], &socket_paths),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let watched = [victim.as_path(), binary.as_path(), script.as_path()];
    let before: Vec<_> = watched.iter().map(|p| fingerprint(p)).collect();
    for mode in MODES {
        let r = util::exec_file(&script, mode);
        assert_eq!(util::status(&r), "ok", "{mode:?}: {r}");
        let results = util::assert_no_holes(&r, &format!("{mode:?}"));
        // The host binary must be refused by the kernel (read-only bind), not just missing.
        let on_binary = &results[format!("chmod {}", binary.display())];
        assert!(
            *on_binary == "EROFS" || *on_binary == "EPERM",
            "{mode:?}: {results}"
        );
    }
    let after: Vec<_> = watched.iter().map(|p| fingerprint(p)).collect();
    if after[1] != before[1] {
        // Never leave a changed host binary behind, even when failing.
        std::os::unix::fs::chown(&binary, Some(before[1].1), None).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(before[1].0)).unwrap();
        let c_path = std::ffi::CString::new(binary.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings.
        unsafe { libc::removexattr(c_path.as_ptr(), c"user.proctor".as_ptr()) };
    }
    assert_eq!(before, after, "a host file changed");
    for (path, listener) in &sockets {
        assert!(
            listener.accept().is_err(),
            "a run connected to {}",
            path.display()
        );
    }
}

/// Leaves a `/dev/shm` file, 64 MiB in it and a SysV segment keyed `key`, all left behind.
fn leave_ipc(key: u32) -> String {
    format!(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nwith open('/dev/shm/left-{key}', 'wb') as f:\n    f.write(b'x' * (64 << 20))\nassert libc.shmget({key}, 1 << 20, 0o1000 | 0o666) >= 0, ctypes.get_errno()\n'left'"
    )
}

/// What of [`leave_ipc`]'s leftovers this run sees, and how full its `/dev/shm` is.
fn find_ipc(key: u32) -> String {
    format!(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nst = os.statvfs('/dev/shm')\nfound = [os.path.exists('/dev/shm/left-{key}'), libc.shmget({key}, 0, 0) >= 0, st.f_bfree < st.f_blocks]\nprint(found)\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_runs_share_no_shm_ipc_files_or_signals() {
    let backend = util::backend().await;
    let key = 0x5eed_0000 + std::process::id() % 0xffff;
    // Concurrent siblings: one session leaves things, the other looks for them.
    let a = backend
        .open_session(Limits::default(), Duration::from_secs(60))
        .await
        .unwrap();
    let b = backend
        .open_session(Limits::default(), Duration::from_secs(60))
        .await
        .unwrap();
    let left = a
        .exec(&leave_ipc(key), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(left.value.as_deref(), Some("'left'"), "{left:?}");
    let mine = a
        .exec(
            "open('mine.txt', 'w').write('a'); os.path.abspath('mine.txt')",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let path = mine.value.unwrap();
    let seen = b
        .exec(&find_ipc(key), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(seen.stdout, "[False, False, False]\n", "{seen:?}");
    // A sibling's scratch: not writable, its metadata not changeable.
    let touch = format!(
        "import os\nout = []\nfor f in (lambda p: open(p, 'w'), lambda p: os.chmod(p, 0), lambda p: os.utime(p, (0, 0))):\n    try:\n        f({path})\n        out.append('CHANGED')\n    except OSError:\n        out.append('refused')\nprint(out)\n"
    );
    let r = b.exec(&touch, Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.stdout, "['refused', 'refused', 'refused']\n", "{r:?}");
    // kill(-1): everything the run may signal; never a sibling or the zygote.
    let r = b
        .exec("import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n'done'", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r.value.as_deref(), Some("'done'"), "{r:?}");
    let r = a
        .exec("open('mine.txt').read()", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r.value.as_deref(), Some("'a'"), "sibling hurt: {r:?}");
    a.close().await;
    b.close().await;
    // The next warm run, after both ended: a fresh /dev/shm and IPC namespace.
    let job = Job::new(Command::Code {
        code: find_ipc(key),
    });
    let r = backend.run(job).await.unwrap();
    assert_eq!(r.stdout, "[False, False, False]\n", "{r:?}");
}

/// Fills the run's `/dev/shm` to `ENOSPC` (a file `fill-{key}`), touches 256 MiB of SysV
/// segments keyed from `key + 1`, then makes segments until the namespace allows no more;
/// leaves all of it and prints how full `/dev/shm` is (free blocks) and why `shmget` stopped.
fn fill_ipc(key: u32) -> String {
    format!(
        r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
f = open("/dev/shm/fill-{key}", "wb")
try:
    while True:
        f.write(b"x" * (1 << 20))
        f.flush()
except OSError as e:
    assert e.errno == errno.ENOSPC, e
for i in range(4):
    seg = libc.shmget({key} + 1 + i, 64 << 20, 0o1000 | 0o600)
    assert seg >= 0, ctypes.get_errno()
    ctypes.memset(libc.shmat(seg, None, 0), 1, 64 << 20)
while libc.shmget(0, 4096, 0o1000 | 0o600) >= 0:
    pass
print(os.statvfs("/dev/shm").f_bfree, errno.errorcode[ctypes.get_errno()])
"#
    )
}

/// A normal run's shared memory: 256 MiB through `/dev/shm`, a touched 64 MiB SysV
/// segment, and a `DataLoader` with two workers (tensors pass through shared memory);
/// prints whether [`fill_ipc`]'s leftovers are seen, and the loader's sum.
fn use_shm(key: u32) -> String {
    format!(
        r#"
import ctypes, os, torch
from torch.utils.data import DataLoader, TensorDataset
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
with open("/dev/shm/mine", "wb") as f:
    f.write(b"y" * (256 << 20))
os.remove("/dev/shm/mine")
seg = libc.shmget(0, 64 << 20, 0o1000 | 0o600)
assert seg >= 0, ctypes.get_errno()
ctypes.memset(libc.shmat(seg, None, 0), 1, 64 << 20)
loader = DataLoader(TensorDataset(torch.arange(64.0).view(16, 4)), batch_size=4, num_workers=2)
total = sum(batch[0].sum().item() for batch in loader)
print([os.path.exists("/dev/shm/fill-{key}"), libc.shmget({key} + 1, 0, 0) >= 0], total)
"#
    )
}

/// The issue's `/dev/shm` exhaustion: a warm run fills its whole `/dev/shm` and makes SysV
/// segments until its namespace refuses more, and leaves them; the next warm run of the
/// same zygote still has all of its shared memory (a `DataLoader` with workers works), and
/// nothing of the first run is on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_dev_shm_and_sysv_segments_left_by_a_warm_run_do_not_reach_the_next() {
    let backend = util::backend().await;
    let key = 0x5eee_0000 + std::process::id() % 0xffff;
    let run = |code: String| {
        let backend = &backend;
        async move { backend.run(Job::new(Command::Code { code })).await.unwrap() }
    };
    let r = run(fill_ipc(key)).await;
    assert_eq!(r.status, Status::DiskLimit, "{r:?}");
    assert_eq!(r.stdout, "0 ENOSPC\n", "{r:?}");
    assert!(r.stderr.contains("filled its /dev/shm"), "{r:?}");
    let r = run(use_shm(key)).await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.stdout, "[False, False] 2016.0\n", "{r:?}");
    assert!(!Path::new(&format!("/dev/shm/fill-{key}")).exists());
    let host_segments = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let keys: Vec<&str> = host_segments
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for i in 1..=4 {
        let k = (key + i).to_string();
        assert!(!keys.contains(&k.as_str()), "segment {k} on the host");
    }
}

/// Tries to write 6 GiB (96 chunks of 64 MiB) into `name` in the scratch.
fn write_6_gib(name: &str) -> String {
    format!("chunk = b'x' * (64 << 20)\nwith open({name:?}, 'wb') as f:\n    for _ in range(96):\n        f.write(chunk)\n")
}

#[test]
fn a_write_past_the_disk_quota_ends_as_disk_limit_and_leaves_nothing() {
    for mode in MODES {
        let name = format!("fill-{}", util::marker());
        let r = util::exec(
            &write_6_gib(&name),
            &[&["--disk-mb", "256", "--memory-mb", "1024"], *mode].concat(),
        );
        assert_eq!(util::status(&r), "disk_limit", "{mode:?}: {r}");
        let stderr = r["stderr"].as_str().unwrap();
        assert!(stderr.contains("No space left on device"), "{mode:?}: {r}");
        assert!(stderr.contains("disk quota of 256 MiB"), "{mode:?}: {r}");
        assert!(
            !left_on_disk(&name),
            "{mode:?}: {name} is on the host's disk"
        );
        // The quota is memory of the run's: it cannot be used to dodge the memory limit.
        let r = util::exec(
            &write_6_gib(&name),
            &[&["--disk-mb", "8192", "--memory-mb", "256"], *mode].concat(),
        );
        assert_eq!(util::status(&r), "oom", "{mode:?}: {r}");
        // A run within its quota is unaffected.
        let r = util::exec(
            "import os\nwith open('f', 'wb') as f:\n    f.write(b'x' * (200 << 20))\nprint(os.path.getsize('f'))\n",
            &[&["--disk-mb", "256"], *mode].concat(),
        );
        assert_eq!(util::status(&r), "ok", "{mode:?}: {r}");
        assert_eq!(r["stdout"], "209715200\n", "{mode:?}: {r}");
    }
}

/// Writes 1 MiB chunks into `path` until ENOSPC; then, after `linger` s, deletes it and exits 0.
fn fill_then_clean(path: &str, linger: f64) -> String {
    format!(
        r#"
import errno, os, time
f = open({path:?}, "wb")
try:
    while True:
        f.write(b"x" * (1 << 20))
        f.flush()
except OSError as e:
    assert e.errno == errno.ENOSPC, e
time.sleep({linger})
try:
    f.close()
except OSError:
    pass
os.remove({path:?})
print("cleaned")
"#
    )
}

/// The disk-quota status does not rest on what is left at the end: a run that filled its
/// scratch or its /dev/shm, caught ENOSPC and cleaned up is `disk_limit` (both ended `ok`),
/// and a run that filled neither is not.
#[test]
fn a_full_scratch_or_dev_shm_is_disk_limit_even_when_cleaned_up() {
    let limits = ["--disk-mb", "64", "--memory-mb", "2048"];
    for mode in MODES {
        let r = util::exec(
            &fill_then_clean("fill.bin", 0.3),
            &[&limits, *mode].concat(),
        );
        assert_eq!(util::status(&r), "disk_limit", "{mode:?}: {r}");
        assert!(
            r["stderr"]
                .as_str()
                .unwrap()
                .contains("disk quota of 64 MiB"),
            "{mode:?}: {r}"
        );
        let r = util::exec(
            &fill_then_clean("/dev/shm/fill", 0.3),
            &[&limits, *mode].concat(),
        );
        assert_eq!(util::status(&r), "disk_limit", "{mode:?}: {r}");
        assert!(
            r["stderr"]
                .as_str()
                .unwrap()
                .contains("filled its /dev/shm"),
            "{mode:?}: {r}"
        );
        // Most of both, deleted: no limit was hit.
        let r = util::exec(
            "import os\nfor p in ['f', '/dev/shm/f']:\n    with open(p, 'wb') as f:\n        f.write(b'x' * (60 << 20))\nos.remove('f')\nprint('ok')\n",
            &[&limits, *mode].concat(),
        );
        assert_eq!(util::status(&r), "ok", "{mode:?}: {r}");
    }
}

/// In a session each call has its own disk status: the call that filled the quota is
/// `disk_limit` (cleaned up or not), a later call that writes nothing is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_call_that_fills_the_quota_is_disk_limit_and_only_that_call() {
    let backend = util::backend().await;
    let limits = Limits {
        disk_mb: 32,
        ..Limits::default()
    };
    let session = backend
        .open_session(limits, Duration::from_secs(60))
        .await
        .unwrap();
    let call = |code: String| {
        let session = session.clone();
        async move { session.exec(&code, Duration::from_secs(30)).await.unwrap() }
    };
    let r = call(fill_then_clean("fill.bin", 0.3)).await;
    assert_eq!(r.status, Status::DiskLimit, "{r:?}");
    assert!(r.stderr.contains("disk quota of 32 MiB"), "{r:?}");
    let r = call("1 + 1".into()).await;
    assert_eq!(
        (r.status, r.value.as_deref()),
        (Status::Ok, Some("2")),
        "{r:?}"
    );
    // Filled and left full: that call is disk_limit, the next one (writing nothing) is not.
    let keep = "f = open('keep.bin', 'wb')\ntry:\n    while True:\n        f.write(b'x' * (1 << 20)); f.flush()\nexcept OSError:\n    pass\n";
    let r = call(keep.into()).await;
    assert_eq!(r.status, Status::DiskLimit, "{r:?}");
    let r = call("2 + 2".into()).await;
    assert_eq!(
        (r.status, r.value.as_deref()),
        (Status::Ok, Some("4")),
        "{r:?}"
    );
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_stay_apart_without_landlock_scoping() {
    // As on kernels before landlock ABI 6: no signal scoping, only the run's own pid namespace.
    let mut config = tokio::task::spawn_blocking(|| proctor_engine::EngineConfig::detect(false))
        .await
        .unwrap()
        .unwrap();
    config.helper = util::proctor_bin();
    config.test_without_landlock_scoping = true;
    let backend = proctor_engine::LocalBackend::start(config).await.unwrap();
    backend.warm_up().await.unwrap();
    let zygote = backend.zygote_pid().await.expect("a zygote");
    let open = || backend.open_session(Limits::default(), Duration::from_secs(60));
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let r = a.exec("x = 41", Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    // kill(-1): everything the run may signal; it is pid 2 of its own namespace, under init.
    let kill_all = "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\nos.getpid()";
    let r = b.exec(kill_all, Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.value.as_deref(), Some("2"), "{r:?}");
    let job = Job::new(Command::Code {
        code: format!("{kill_all}\nprint('survived')"),
    });
    let r = backend.run(job).await.unwrap();
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (Status::Ok, "survived\n"),
        "{r:?}"
    );
    let r = a.exec("x + 1", Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.value.as_deref(), Some("42"), "sibling hurt: {r:?}");
    assert!(b.is_alive());
    assert_eq!(backend.zygote_pid().await, Some(zygote), "the zygote died");
    a.close().await;
    b.close().await;
}

#[test]
fn a_cold_run_cannot_read_its_sandbox_spec_from_init() {
    // Init (pid 1 of a cold run's namespace) is the helper, started with the run's whole
    // spec (environment, host paths, cgroups, ids) as its argument: the helper wipes it.
    let r = util::exec(
        "print(open('/proc/1/cmdline', 'rb').read().strip(b'\\0'))\n",
        &["--cold"],
    );
    assert_eq!(util::status(&r), "ok", "{r}");
    assert_eq!(r["stdout"], "b''\n", "{r}");
}

/// Searches every live frame of the run (its own and its harness's, up to the bottom of
/// the stack) for a local holding `needle`, directly or as a value of a dict.
const FRAMES_HOLDING: &str = r#"
import os, sys

def holders():
    needle = os.environ.pop("PROCTOR_TEST_SECRET")
    found = []
    frame = sys._getframe(1).f_back  # below the run's own module
    while frame is not None:
        for name, value in frame.f_locals.items():
            for v in value.values() if isinstance(value, dict) else [value]:
                inner = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else [v]
                if any(x == needle or (isinstance(x, (list, tuple)) and needle in x) for x in inner):
                    found.append(f"{frame.f_code.co_name}:{name}")
        frame = frame.f_back
    return found

print(holders())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_run_s_frames_keep_no_copy_of_its_environment() {
    // A harness may take a secret out of os.environ before the run's own code starts (the
    // gym's run key); a copy of the job's environment left in a frame of the warm child
    // (its request) would hand it back to that code.
    let backend = util::backend().await;
    let secret = format!("secret-{}", util::marker());
    let mut job = Job::new(Command::Code {
        code: FRAMES_HOLDING.into(),
    });
    job.env.push(("PROCTOR_TEST_SECRET".into(), secret));
    let r = backend.run(job).await.unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.stdout, "[]\n", "frames holding the secret: {r:?}");
}
