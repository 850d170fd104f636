//! The sandbox as an ordinary user: a user namespace plus a delegated cgroup subtree,
//! and a clear refusal without the delegation. `.ci/run` creates the user
//! (`PROCTOR_TEST_UNPRIVILEGED_USER`) and delegates `/sys/fs/cgroup/<controller>/<user>`.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

struct User {
    name: String,
    home: PathBuf,
    bin: PathBuf,
    _bin_dir: tempfile::TempDir,
}

fn user() -> Option<User> {
    let Ok(name) = std::env::var("PROCTOR_TEST_UNPRIVILEGED_USER") else {
        eprintln!("PROCTOR_TEST_UNPRIVILEGED_USER is not set: the unprivileged sandbox checks run in CI (.ci/run), which creates that user");
        return None;
    };
    let home = PathBuf::from(format!("/home/{name}"));
    // The build tree may sit under a private home; give the user its own copy of the binary.
    let bin_dir = tempfile::Builder::new()
        .prefix("proctor-bin")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("proctor");
    std::fs::copy(util::proctor_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(User {
        name,
        home,
        bin,
        _bin_dir: bin_dir,
    })
}

impl User {
    /// A new directory under `parent`, the user's own with mode 0700.
    fn private_dir(&self, parent: &Path) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("proctor-private")
            .tempdir_in(parent)
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(self.uid()), None).unwrap();
        dir
    }

    /// Connects to the unix socket at `path` as the user on the host, outside any sandbox;
    /// false (and says so) when the host has no `python3` to do it with.
    fn connects_on_the_host(&self, path: &Path) -> bool {
        let connect = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'host')\n";
        let out = Command::new("runuser")
            .args([
                "-u",
                &self.name,
                "--",
                "env",
                "-i",
                "PATH=/usr/local/bin:/usr/bin:/bin",
            ])
            .args(["python3", "-c", connect])
            .arg(path)
            .output()
            .unwrap();
        if out.status.code() == Some(127) {
            eprintln!("no python3 on the host: the control connection is skipped");
            return false;
        }
        assert!(
            out.status.success(),
            "the user cannot reach its own socket on the host: {out:?}"
        );
        true
    }

    fn uid(&self) -> u32 {
        let out = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// `proctor exec` as the user; `delegated` chooses whether its cgroup subtree is named.
    fn exec(&self, code: &str, args: &[&str], delegated: bool) -> (Option<i32>, Value) {
        self.exec_with_env(code, args, delegated, &[])
    }

    /// [`User::exec`] with extra environment variables for `proctor`.
    fn exec_with_env(
        &self,
        code: &str,
        args: &[&str],
        delegated: bool,
        env: &[(&str, &str)],
    ) -> (Option<i32>, Value) {
        let dir = tempfile::Builder::new()
            .prefix("proctor-u")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = dir.path().join("main.py");
        std::fs::write(&script, code).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The user's own file, as it would be: only the sandbox keeps the run from changing it.
        std::os::unix::fs::chown(&script, Some(self.uid()), None).unwrap();
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &self.name, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg(format!(
                "PROCTOR_HOME={}/.cache/proctor",
                self.home.display()
            ));
        if delegated {
            cmd.arg(format!("PROCTOR_CGROUP_PARENT={}", self.name));
        }
        for (key, value) in env {
            cmd.arg(format!("{key}={value}"));
        }
        // What a login of that user would have to reach PyPI (CA bundles, proxies, index).
        for (key, value) in std::env::vars() {
            let passed = key.starts_with("SSL_CERT")
                || key.starts_with("UV_")
                || key.to_ascii_lowercase().ends_with("_proxy");
            if passed {
                cmd.arg(format!("{key}={value}"));
            }
        }
        let out = cmd
            .arg(&self.bin)
            .arg("exec")
            .arg(&script)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "bad json ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), value)
    }
}

#[test]
fn unprivileged_user_with_a_delegated_cgroup_is_sandboxed() {
    let Some(user) = user() else { return };
    let (_, r) = user.exec("import os\nprint('uid', os.getuid())\n", &["--cold"], true);
    assert_eq!(util::status(&r), "ok", "{r}");
    let probe = r#"
import os, socket
for p in ["/etc/shadow", "/root", os.path.expanduser("~/.bashrc"), "/home"]:
    try:
        os.listdir(p) if os.path.isdir(p) else open(p).read()
        print("READ", p)
    except OSError:
        print("denied")
try:
    socket.create_connection(("127.0.0.1", 22), timeout=2); print("CONNECTED")
except OSError:
    print("denied")
try:
    open("/var/tmp/escape", "w"); print("WROTE")
except OSError:
    print("denied")
"#;
    for mode in [&["--cold"][..], &[][..]] {
        let (_, r) = user.exec(probe, mode, true);
        assert_eq!(util::status(&r), "ok", "{r}");
        let out = r["stdout"].as_str().unwrap();
        assert_eq!(out.matches("denied").count(), 6, "{mode:?}: {out}");
    }
    let (_, r) = user.exec(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 2**20))\n",
        &["--memory-mb", "512"],
        true,
    );
    assert_eq!(util::status(&r), "oom", "{r}");
    let (_, r) = user.exec(
        "while True:\n    pass\n",
        &["--timeout-s", "2", "--cold"],
        true,
    );
    assert_eq!(util::status(&r), "timeout", "{r}");
}

#[test]
fn unprivileged_user_without_delegation_is_refused_clearly() {
    let Some(user) = user() else { return };
    let (code, r) = user.exec("print('must not run')\n", &["--cold"], false);
    assert_eq!(code, Some(2), "{r}");
    let msg = r["error"].as_str().unwrap_or_default();
    assert!(msg.contains("sandbox unavailable"), "{msg}");
    assert!(msg.contains("writable cgroup"), "{msg}");
    assert!(msg.contains("PROCTOR_CGROUP_PARENT"), "{msg}");
}

#[test]
fn unprivileged_cleanup_removes_a_deep_chain_with_locked_directories() {
    let Some(user) = user() else { return };
    // Deeper than the 1,024 descriptors a recursive removal would need; a locked level
    // (mode 0) on the way, which the owner must unlock to remove.
    let code = "import os\nos.mkdir('deep-u')\nfd = os.open('deep-u', os.O_RDONLY)\nfor i in range(3000):\n    os.mkdir('d', dir_fd=fd)\n    nxt = os.open('d', os.O_RDONLY, dir_fd=fd)\n    if i == 100:\n        locked = os.dup(fd)\n    os.close(fd)\n    fd = nxt\nos.chmod('d', 0, dir_fd=locked)\nprint('built')\n";
    for mode in [&["--cold"][..], &[][..]] {
        let (_, r) = user.exec(code, mode, true);
        assert_eq!(util::status(&r), "ok", "{mode:?}: {r}");
        let runs = user.home.join(".cache/proctor/runs");
        let left: Vec<_> = walkdir_two_levels(&runs)
            .into_iter()
            .filter(|p| p.join("deep-u").exists())
            .collect();
        assert!(left.is_empty(), "{mode:?}: left on disk: {left:?}");
    }
}

/// Run directories and the run directories inside the warm pool's directory.
fn walkdir_two_levels(runs: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for run in std::fs::read_dir(runs).into_iter().flatten().flatten() {
        found.push(run.path().join("work"));
        for inner in std::fs::read_dir(run.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(inner.path().join("work"));
        }
    }
    found
}

#[test]
fn unprivileged_runs_cannot_change_reach_or_watch_the_users_world() {
    let Some(user) = user() else { return };
    let dir = tempfile::Builder::new()
        .prefix("proctor-world")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A file of the user's own, outside the run: on the host the user may chmod it.
    let own = dir.path().join("own");
    std::fs::write(&own, "mine\n").unwrap();
    std::os::unix::fs::chown(&own, Some(user.uid()), None).unwrap();
    // A socket anyone on the host may connect to, and two only the user may connect to
    // (0600, the user's own, in a 0700 directory of the user's): in its home and in /tmp.
    let open = listen(&dir.path().join("open.sock"), 0o666);
    let home = user.private_dir(&user.home);
    let tmp = user.private_dir(Path::new("/tmp"));
    let closed: Vec<_> = [&home, &tmp]
        .into_iter()
        .map(|d| {
            let (path, listener) = listen(&d.path().join("closed.sock"), 0o600);
            std::os::unix::fs::chown(&path, Some(user.uid()), None).unwrap();
            (path, listener)
        })
        .collect();
    // On the host the user reaches its own sockets: only the sandbox keeps a run from them.
    for (path, listener) in &closed {
        if user.connects_on_the_host(path) {
            assert!(
                accepted(listener),
                "{}: the control connection",
                path.display()
            );
        }
    }
    let sockets: Vec<_> = [&open]
        .into_iter()
        .chain(&closed)
        .map(|(p, _)| p.as_path())
        .collect();
    let code = util::host_world_attack(&[&own], &sockets);
    for mode in [&["--cold"][..], &[][..]] {
        let (_, r) = user.exec(&code, mode, true);
        util::assert_no_holes(&r, &format!("{mode:?}"));
    }
    let meta = std::fs::metadata(&own).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    for (path, listener) in [&open].into_iter().chain(&closed) {
        assert!(!accepted(listener), "a run reached {}", path.display());
    }
}

/// A non-blocking listener at `path` with permissions `mode`.
fn listen(path: &Path, mode: u32) -> (PathBuf, UnixListener) {
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    (path.to_path_buf(), listener)
}

/// Whether a connection is waiting (or arrives within a second).
fn accepted(listener: &UnixListener) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if listener.accept().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn unprivileged_warm_runs_cannot_signal_the_zygote_or_siblings_without_landlock_scoping() {
    let Some(user) = user() else { return };
    // All warm runs share the user's id here: only the run's own pid namespace keeps its
    // kill(-1) from the zygote (which would end the run unreported) and the spare child;
    // the run is pid 2 of that namespace, under its init.
    let code = "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\nprint('survived', os.getpid())\n";
    let env = [(proctor_engine::WITHOUT_LANDLOCK_SCOPING_ENV, "1")];
    let (_, r) = user.exec_with_env(code, &[], true, &env);
    assert_eq!(util::status(&r), "ok", "{r}");
    assert_eq!(r["stdout"], "survived 2\n", "{r}");
}

#[test]
fn unprivileged_disk_quota_ends_as_disk_limit_and_leaves_nothing() {
    let Some(user) = user() else { return };
    let code = "chunk = b'x' * (64 << 20)\nwith open('fill-u', 'wb') as f:\n    for _ in range(96):\n        f.write(chunk)\n";
    for mode in [&["--cold"][..], &[][..]] {
        let args = [&["--disk-mb", "128", "--memory-mb", "1024"], mode].concat();
        let (_, r) = user.exec(code, &args, true);
        assert_eq!(util::status(&r), "disk_limit", "{mode:?}: {r}");
        let runs = user.home.join(".cache/proctor/runs");
        let left: Vec<_> = walkdir_two_levels(&runs)
            .into_iter()
            .filter(|p| p.join("fill-u").exists())
            .collect();
        assert!(left.is_empty(), "{mode:?}: left on disk: {left:?}");
    }
}
