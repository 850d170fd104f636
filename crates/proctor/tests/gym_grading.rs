//! Gradings are admitted by memory and cores: the sum of the running gradings' memory
//! limits stays within the budget, at most `max_running` run at once, a bounded queue
//! waits and beyond it a request is refused with a time to retry. Over real HTTP, `/grader`
//! needs an account's token, concurrent requests run one at a time under a small budget
//! (the rest queue or get 503 with `Retry-After`), all are answered, and an episode's
//! `submit_fix` goes through the same admission: refused, the episode stays as it was.

mod util;

use std::sync::Arc;
use std::time::Duration;

use proctor_accounts::{Accounts, Role};
use proctor_gym::admission::{Admission, Entry, GradingLimits};
use proctor_gym::episode::{Access, EpisodeConfig, Gym};
use proctor_gym::GymError;
use serde_json::{json, Value};

fn limits(memory_budget_mb: u64, max_running: usize, max_queued: usize) -> GradingLimits {
    GradingLimits {
        memory_budget_mb,
        max_running,
        max_queued,
    }
}

/// An admission under `limits` with room for 64 sessions.
fn admission(limits: GradingLimits) -> Admission {
    Admission::new(limits, 64)
}

/// Runs `n` gradings of `mb` each holding their ticket for `hold`; the most that ran
/// at once and how many were refused.
async fn flood(admission: &Admission, n: usize, mb: u64, hold: Duration) -> (usize, usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let a = admission.clone();
            tokio::spawn(async move {
                let ticket = a.admit(mb).await?;
                tokio::time::sleep(hold).await;
                drop(ticket);
                Ok::<_, GymError>(())
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            assert!(matches!(e, GymError::Busy { .. }), "{e}");
            refused += 1;
        }
    }
    (admission.status().peak_running, refused)
}

#[tokio::test]
async fn memory_bounds_the_gradings_at_once() {
    let a = admission(limits(25_000, 8, 16));
    let (peak, refused) = flood(&a, 6, 10_240, Duration::from_millis(50)).await;
    assert_eq!((peak, refused), (2, 0));
    let s = a.status();
    assert_eq!((s.running, s.queued, s.memory_reserved_mb), (0, 0, 0));
}

#[tokio::test]
async fn cores_bound_the_gradings_at_once() {
    let a = admission(limits(1 << 20, 3, 16));
    assert_eq!(flood(&a, 9, 100, Duration::from_millis(50)).await, (3, 0));
}

#[tokio::test]
async fn beyond_the_queue_a_grading_is_refused_with_a_time_to_retry() {
    let a = admission(limits(10_000, 1, 2));
    let (peak, refused) = flood(&a, 5, 6_000, Duration::from_millis(200)).await;
    assert_eq!((peak, refused), (1, 2));
    assert_eq!(a.status().refused, 2);
    let held = a.admit(6_000).await.unwrap();
    let q1 = tokio::spawn({
        let a = a.clone();
        async move { a.admit(6_000).await.map(drop) }
    });
    let q2 = tokio::spawn({
        let a = a.clone();
        async move { a.admit(6_000).await.map(drop) }
    });
    while a.status().queued < 2 {
        tokio::task::yield_now().await;
    }
    match a.admit(6_000).await {
        Err(GymError::Busy { retry_after_s, .. }) => assert!(retry_after_s >= 1),
        other => panic!("a full queue must refuse: {:?}", other.map(|_| ())),
    }
    drop(held);
    q1.await.unwrap().unwrap();
    q2.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_grading_larger_than_the_budget_runs_alone() {
    let a = admission(limits(4_096, 4, 4));
    assert_eq!(
        flood(&a, 3, 10_240, Duration::from_millis(20)).await,
        (1, 0)
    );
}

#[tokio::test]
async fn a_request_that_gives_up_leaves_the_queue() {
    let a = admission(limits(1_000, 1, 1));
    let held = a.admit(1_000).await.unwrap();
    let waiter = tokio::spawn({
        let a = a.clone();
        async move { a.admit(1_000).await.map(drop) }
    });
    while a.status().queued < 1 {
        tokio::task::yield_now().await;
    }
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(a.status().queued, 0);
    drop(held);
    a.admit(1_000).await.unwrap();
}

#[tokio::test]
async fn a_session_never_takes_the_memory_the_first_waiting_grading_needs() {
    let a = admission(limits(10_000, 2, 4));
    let _session = a.open_session(2_000).unwrap();
    let running = a.admit(6_000).await.unwrap();
    let Entry::Queued(waiting) = a.enter(6_000).unwrap() else {
        panic!("8,000 of 10,000 MiB are taken: a second grading of 6,000 waits");
    };
    let refused = a
        .open_session(1_000)
        .err()
        .expect("1,000 MiB are the grading's");
    assert!(refused.to_string().contains("10000 MiB"), "{refused}");
    drop(running);
    let second = tokio::time::timeout(Duration::from_secs(5), Entry::Queued(waiting).admitted())
        .await
        .expect("the grading in line runs once the first is done");
    // Nobody waits now: what is left is free for a session.
    a.open_session(2_000).unwrap();
    drop(second);
}

#[tokio::test]
async fn a_session_is_refused_while_gradings_hold_the_memory() {
    let a = admission(limits(10_000, 2, 4));
    let gradings = [a.admit(4_000).await.unwrap(), a.admit(4_000).await.unwrap()];
    let one = a.open_session(2_000).unwrap();
    assert!(a.open_session(2_000).is_err(), "the budget is spent");
    drop(gradings);
    let two = a.open_session(2_000).unwrap();
    drop((one, two));
    let s = a.status();
    assert_eq!((s.sessions, s.sessions_memory_mb, s.running), (0, 0, 0));
}

#[tokio::test]
async fn the_count_of_sessions_is_bounded_too() {
    let a = Admission::new(limits(1 << 20, 2, 4), 2);
    let open = [a.open_session(1).unwrap(), a.open_session(1).unwrap()];
    let refused = a.open_session(1).err().unwrap();
    assert!(refused.to_string().contains("2 episodes"), "{refused}");
    drop(open);
    a.open_session(1).unwrap();
}

#[tokio::test]
async fn a_grading_larger_than_the_budget_waits_for_the_sessions_to_close() {
    let a = admission(limits(6_000, 2, 4));
    let session = a.open_session(2_048).unwrap();
    let Entry::Queued(waiting) = a.enter(10_240).unwrap() else {
        panic!("a grading of more than the budget runs alone");
    };
    assert!(
        a.open_session(2_048).is_err(),
        "the grading in line needs it all"
    );
    drop(session);
    let ticket = tokio::time::timeout(Duration::from_secs(5), Entry::Queued(waiting).admitted())
        .await
        .expect("alone, it runs");
    assert_eq!(a.status().memory_reserved_mb, 6_000);
    drop(ticket);
}

/// A fix that trains nothing and takes a few seconds: a grading that holds its slot.
const SLEEPER: &str = "import time\ntime.sleep(3)\n";

/// A gym whose accounts hold alice, grading one task1 fix at a time by memory (cores
/// would allow four) with one more queued; its port, server and alice's token (and the
/// accounts' directory, removed when dropped).
async fn small_gym() -> (
    u16,
    tokio::task::JoinHandle<std::io::Result<()>>,
    String,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = proctor_store::Store::open(&dir.path().join("proctor.db"))
        .await
        .unwrap();
    let accounts = Accounts::new(store);
    accounts
        .add_user("alice", Role::Participant, None)
        .await
        .unwrap();
    let token = accounts.create_token("alice", "trainer").await.unwrap();
    let task = proctor_gym::task::find("task1").unwrap();
    let one = proctor_gym::grade::memory_limit_mb(&task);
    let config = EpisodeConfig {
        grading: limits(one + one / 2, 4, 1),
        ..EpisodeConfig::default()
    };
    let access = Access {
        accounts: Some(accounts),
        require_token: false,
    };
    let gym: Arc<Gym> = Gym::with_access(util::backend().await, 4, config, access);
    let (port, server) = util::serve_gym(gym).await;
    (port, server, token, dir)
}

async fn grading_health(port: u16) -> Value {
    let (code, body) = util::http(port, "GET", "/health", None, &Value::Null).await;
    assert_eq!(code, 200, "the server stays up: {body}");
    serde_json::from_str::<Value>(&body).unwrap()["grading"].clone()
}

/// `/grader` with `token`, in the background: status, head, body.
fn grade_in_background(port: u16, token: &str) -> tokio::task::JoinHandle<(u16, String, String)> {
    let token = token.to_string();
    tokio::spawn(async move {
        let fix = json!({"task_id": "task1", "code": SLEEPER});
        util::http_full(port, "POST", "/grader", Some(&token), &fix).await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gradings_run_within_the_budget_and_the_rest_queue_or_get_503() {
    let (port, server, alice, _dir) = small_gym().await;
    let fix = json!({"task_id": "task1", "code": SLEEPER});
    let (code, body) = util::http(port, "POST", "/grader", None, &fix).await;
    assert_eq!(code, 401, "anonymous grading: {body}");
    assert!(body.contains("proctor user token"), "{body}");

    let requests: Vec<_> = (0..3).map(|_| grade_in_background(port, &alice)).collect();
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.unwrap());
    }
    answers.sort_by_key(|a| a.0);
    let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(codes, [200, 200, 503], "{answers:?}");
    for (_, _, body) in &answers[..2] {
        let report: Value = serde_json::from_str(body).unwrap();
        assert!(report["score"].as_f64().unwrap() <= 0.15, "{report}");
    }
    let (_, head, body) = &answers[2];
    assert!(body.contains("CAPACITY_REACHED"), "{body}");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("a 503 says when to retry: {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{head}");

    let grading = grading_health(port).await;
    assert_eq!(grading["peak_running"], 1, "{grading}");
    assert_eq!(grading["refused"], 1, "{grading}");
    assert_eq!(
        (&grading["running"], &grading["queued"]),
        (&json!(0), &json!(0))
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_submit_fix_leaves_the_episode_as_it_was() {
    let (port, server, alice, _dir) = small_gym().await;
    let (code, body) = util::http(port, "POST", "/reset", None, &json!({"task_id": "task1"})).await;
    assert_eq!(code, 200, "{body}");
    let reset: Value = serde_json::from_str(&body).unwrap();
    let (eid, episode_token) = (
        reset["episode_id"].as_str().unwrap().to_string(),
        reset["episode_token"].as_str().unwrap().to_string(),
    );
    let (code, _) = util::http(
        port,
        "POST",
        "/grader",
        Some(&episode_token),
        &json!({"task_id": "task1", "code": SLEEPER}),
    )
    .await;
    assert_eq!(
        code, 401,
        "an episode token does not grade outside its episode"
    );

    // One grading runs and one waits: the gym's queue is full.
    let running = [
        grade_in_background(port, &alice),
        grade_in_background(port, &alice),
    ];
    while grading_health(port).await["queued"] != 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let submit = json!({"episode_id": eid, "action_type": "submit_fix", "fixed_code": SLEEPER});
    let (code, head, body) =
        util::http_full(port, "POST", "/step", Some(&episode_token), &submit).await;
    assert_eq!(code, 503, "{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    let state_path = format!("/state?episode_id={eid}");
    let (_, state) = util::http(port, "GET", &state_path, Some(&episode_token), &Value::Null).await;
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        (&state["step_count"], &state["done"]),
        (&json!(0), &json!(false)),
        "{state}"
    );

    for r in running {
        assert_eq!(r.await.unwrap().0, 200);
    }
    let (code, body) = util::http(port, "POST", "/step", Some(&episode_token), &submit).await;
    assert_eq!(
        code, 200,
        "once there is room the same fix is graded: {body}"
    );
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["done"], true, "{reply}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gym_full_of_sessions_grades_its_episodes_fixes_in_turn() {
    // Memory for one grading and nothing else: two open episodes' sessions leave too
    // little for either's grading until the fixes are in line and the sessions close.
    let task = proctor_gym::task::find("task1").unwrap();
    let config = EpisodeConfig {
        grading: limits(proctor_gym::grade::memory_limit_mb(&task), 2, 4),
        ..EpisodeConfig::default()
    };
    let gym = Gym::new(util::backend().await, 4, config);
    let (port, server) = util::serve_gym(gym).await;
    let mut episodes = Vec::new();
    for _ in 0..2 {
        let (code, body) =
            util::http(port, "POST", "/reset", None, &json!({"task_id": "task1"})).await;
        assert_eq!(code, 200, "{body}");
        episodes.push(serde_json::from_str::<Value>(&body).unwrap());
    }
    let submits: Vec<_> = episodes
        .iter()
        .map(|reset| {
            let submit = json!({"episode_id": reset["episode_id"], "action_type": "submit_fix", "fixed_code": SLEEPER});
            let token = reset["episode_token"].as_str().unwrap().to_string();
            tokio::spawn(async move {
                let step = util::http(port, "POST", "/step", Some(&token), &submit);
                tokio::time::timeout(Duration::from_secs(600), step).await
            })
        })
        .collect();
    for s in submits {
        let (code, body) = s
            .await
            .unwrap()
            .expect("a fix in line is graded, not stuck");
        assert_eq!(code, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["done"], true);
    }
    let grading = grading_health(port).await;
    assert_eq!(
        (&grading["peak_running"], &grading["sessions"]),
        (&json!(1), &json!(0)),
        "{grading}"
    );
    server.abort();
}
