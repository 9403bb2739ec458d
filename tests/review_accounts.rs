//! Accounts for a province's review office: changing one's own password, an admin resetting
//! one or removing an account (the audit trail keeps the name), sessions ended server-side
//! after idling or living too long, and the argon2 cost.

mod review_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use landwatch_review::users::{HashCost, SessionLimits};
use landwatch_review::web::ServeOptions;
use landwatch_review::Store;
use review_support::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn status_of_me(c: &Client) -> u16 {
    c.get("/api/me").await.status().as_u16()
}

async fn user_id(admin: &Client, name: &str) -> i64 {
    let list = admin.get_json("/api/admin/users").await;
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("user {name} listed"))["id"]
        .as_i64()
        .unwrap()
}

async fn error_of(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status(), status);
    let body: Value = resp.json().await.expect("json error");
    body["error"].as_str().expect("error text").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn own_password_change_needs_the_current_password_and_ends_the_other_sessions() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let here = Client::login(&base, "rev").await;
    let elsewhere = Client::login(&base, "rev").await;

    let wrong = here
        .post_json(
            "/api/me/password",
            &json!({"current_password": "not my password", "new_password": NEW_PASSWORD}),
        )
        .await;
    assert!(error_of(wrong, 403).await.contains("current password"));
    let short = here
        .post_json(
            "/api/me/password",
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert!(error_of(short, 400).await.contains("8"));
    assert_eq!(status_of_me(&elsewhere).await, 200, "failed changes end nothing");

    let ok = here
        .post_json(
            "/api/me/password",
            &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(status_of_me(&here).await, 200, "the session that changed it stays");
    assert_eq!(status_of_me(&elsewhere).await, 401, "every other session ends");
    assert_eq!(
        post_login(&base, "rev", PASSWORD).await.headers()["location"],
        "/login?error=1"
    );
    Client::login_with(&base, "rev", NEW_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_resets_passwords_and_removes_accounts_keeping_the_audit_trail() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let boss = Client::login(&base, "boss").await;
    let rev = Client::login(&base, "rev").await;
    let rev_id = user_id(&boss, "rev").await;
    let boss_id = user_id(&boss, "boss").await;
    let patch = row_id(&rev, "P0001").await;
    let r = rev
        .post_json(
            &format!("/api/patches/{patch}/verdict"),
            &json!({"status": "illegal", "note": "x"}),
        )
        .await;
    assert_eq!(r.status(), 200);

    // A reviewer can do neither.
    let path = format!("/api/admin/users/{boss_id}/password");
    assert_eq!(
        rev.post_json(&path, &json!({"password": NEW_PASSWORD})).await.status(),
        403
    );
    assert_eq!(rev.delete(&format!("/api/admin/users/{boss_id}")).await.status(), 403);

    // Reset: the user's sessions end and the new password works.
    let reset = boss
        .post_json(
            &format!("/api/admin/users/{rev_id}/password"),
            &json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(reset.status(), 200);
    assert_eq!(status_of_me(&rev).await, 401, "a re-passworded user's sessions end");
    let rev = Client::login_with(&base, "rev", NEW_PASSWORD).await;
    let own = boss
        .post_json(
            &format!("/api/admin/users/{boss_id}/password"),
            &json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert!(
        error_of(own, 409).await.contains("current password"),
        "own password needs the current one"
    );
    let missing = boss
        .post_json("/api/admin/users/999/password", &json!({"password": NEW_PASSWORD}))
        .await;
    assert_eq!(missing.status(), 404);

    // Removal: sessions end, no login, the name stays on the verdicts and in the export.
    assert!(error_of(boss.delete(&format!("/api/admin/users/{boss_id}")).await, 409)
        .await
        .contains("own"));
    assert_eq!(boss.delete(&format!("/api/admin/users/{rev_id}")).await.status(), 200);
    assert_eq!(status_of_me(&rev).await, 401, "a removed user's sessions end");
    assert_eq!(
        post_login(&base, "rev", NEW_PASSWORD).await.headers()["location"],
        "/login?error=1"
    );
    let listed = boss.get_json("/api/admin/users").await;
    let entry = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == rev_id)
        .cloned();
    assert_eq!(entry.expect("removed users stay listed")["removed"], true);
    let detail = boss.get_json(&format!("/api/patches/{patch}")).await;
    assert_eq!(detail["current"]["user"], "rev");
    assert_eq!(detail["history"][0]["user"], "rev");
    let csv = boss.get("/api/export?format=csv").await.text().await.unwrap();
    assert!(csv.contains(",rev,"), "{csv}");

    // A removed account cannot be re-enabled, re-passworded or removed again, and its
    // name is not handed to somebody else.
    let enable = boss
        .post_json(
            &format!("/api/admin/users/{rev_id}/disabled"),
            &json!({"disabled": false}),
        )
        .await;
    assert_eq!(enable.status(), 404);
    let again = boss
        .post_json(
            &format!("/api/admin/users/{rev_id}/password"),
            &json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(again.status(), 404);
    assert_eq!(boss.delete(&format!("/api/admin/users/{rev_id}")).await.status(), 404);
    let reuse = boss
        .post_json(
            "/api/admin/users",
            &json!({"name": "rev", "role": "reviewer", "password": PASSWORD}),
        )
        .await;
    assert!(error_of(reuse, 409).await.contains("removed"));
}

fn token_hash(cookie: &str) -> String {
    let token = cookie.split_once('=').expect("cookie pair").1;
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn hours_ago(h: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(h))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Moves a session's creation and last use into the past, as if time had passed.
fn age_session(store: &Store, c: &Client, created_hours_ago: i64, idle_hours: i64) {
    let n = store
        .conn()
        .execute(
            "UPDATE sessions SET created_at = ?2, last_seen_at = ?3 WHERE token_hash = ?1",
            rusqlite::params![
                token_hash(&c.cookie),
                hours_ago(created_hours_ago),
                hours_ago(idle_hours)
            ],
        )
        .expect("age session");
    assert_eq!(n, 1, "the session is in the database");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_overlong_sessions_end_server_side() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let store = fx.store();

    // Defaults: 8 h idle, 12 h in all.
    let idle = Client::login(&base, "rev").await;
    age_session(&store, &idle, 9, 9);
    assert_eq!(status_of_me(&idle).await, 401, "idle 9 h: ended");
    let recent = Client::login(&base, "rev").await;
    age_session(&store, &recent, 7, 7);
    assert_eq!(status_of_me(&recent).await, 200, "idle 7 h: still valid");
    let seen: String = store
        .conn()
        .query_row(
            "SELECT last_seen_at FROM sessions WHERE token_hash = ?1",
            [token_hash(&recent.cookie)],
            |r| r.get(0),
        )
        .unwrap();
    assert!(seen > hours_ago(1), "using a session marks it as seen: {seen}");
    let old = Client::login(&base, "rev").await;
    age_session(&store, &old, 13, 0);
    assert_eq!(status_of_me(&old).await, 401, "older than 12 h: ended however busy");
    // An ended session also cannot change anything.
    let r = old
        .post_json("/api/patches/1/verdict", &json!({"status": "illegal"}))
        .await;
    assert_eq!(r.status(), 401);

    // Configured limits apply, and the cookie lasts no longer than the session may.
    let options = ServeOptions {
        session_limits: SessionLimits {
            idle: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(2 * 3600),
        },
        ..ServeOptions::default()
    };
    let short = fx.start_server_with(options).await;
    let c = Client::login(&short, "rev").await;
    age_session(&store, &c, 1, 1);
    assert_eq!(status_of_me(&c).await, 401, "idle 1 h with a 30 min limit");
    let resp = post_login(&short, "rev", PASSWORD).await;
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Max-Age=7200"), "{cookie}");
}

/// Runs the landwatch binary with `stdin` piped in and extra environment variables;
/// returns (exit code, stdout + stderr).
fn landwatch(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_landwatch"));
    cmd.args(args)
        .env_remove("LANDWATCH_PASSWORD")
        .env_remove("LANDWATCH_ARGON2_MEMORY_KIB")
        .env_remove("LANDWATCH_ARGON2_ITERATIONS")
        .env_remove("LANDWATCH_ARGON2_PARALLELISM")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn landwatch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn stored_hash(store: &Store, name: &str) -> String {
    store
        .conn()
        .query_row("SELECT password_hash FROM users WHERE name = ?1", [name], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn passwd_and_remove_from_the_command_line() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let db = fx.db.to_str().unwrap();
    let rev = Client::login(&base, "rev").await;

    let stdin = format!("{NEW_PASSWORD}\n");
    let (code, out) = landwatch(
        &["review", "user", "passwd", "rev", "--db", db, "--password-stdin"],
        &stdin,
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(status_of_me(&rev).await, 401, "passwd ends the user's sessions");
    let rev = Client::login_with(&base, "rev", NEW_PASSWORD).await;
    let (code, out) = landwatch(
        &["review", "user", "passwd", "nobody", "--db", db, "--password-stdin"],
        &stdin,
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nobody"), "{out}");
    let (code, out) = landwatch(
        &["review", "user", "passwd", "rev", "--db", db, "--password-stdin"],
        "short\n",
        &[],
    );
    assert_eq!(code, 2, "{out}");

    let (code, out) = landwatch(&["review", "user", "remove", "rev", "--db", db], "", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(status_of_me(&rev).await, 401, "remove ends the user's sessions");
    let (code, out) = landwatch(&["review", "user", "list", "--db", db], "", &[]);
    assert_eq!(code, 0);
    assert!(
        out.lines().any(|l| l.contains("\trev\t") && l.ends_with("removed")),
        "{out}"
    );
    let (code, out) = landwatch(&["review", "user", "remove", "rev", "--db", db], "", &[]);
    assert_eq!(code, 2, "removing twice: {out}");
}

/// Extra environment variables of a command.
type Env<'a> = &'a [(&'a str, &'a str)];

/// `review user add NAME --role reviewer` with the password on stdin and `extra` flags.
fn add_reviewer(db: &str, name: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut args = vec![
        "review",
        "user",
        "add",
        name,
        "--role",
        "reviewer",
        "--db",
        db,
        "--password-stdin",
    ];
    args.extend_from_slice(extra);
    landwatch(&args, &format!("{PASSWORD}\n"), env)
}

#[tokio::test(flavor = "multi_thread")]
async fn argon2_cost_is_configurable_with_safe_minimums_and_old_hashes_keep_verifying() {
    let fx = Fixture::new();
    let db = fx.db.to_str().unwrap();
    let add = |name: &str, extra: &[&str], env: &[(&str, &str)]| add_reviewer(db, name, extra, env);
    let (code, out) = add(
        "costly",
        &[
            "--argon2-memory-kib",
            "32768",
            "--argon2-iterations",
            "3",
            "--argon2-parallelism",
            "2",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = add("from-env", &[], &[("LANDWATCH_ARGON2_ITERATIONS", "4")]);
    assert_eq!(code, 0, "{out}");
    let refused: [(&[&str], Env, &str); 4] = [
        (&["--argon2-memory-kib", "1024"], &[], "--argon2-memory-kib"),
        (&["--argon2-iterations", "1"], &[], "--argon2-iterations"),
        (&["--argon2-parallelism", "0"], &[], "--argon2-parallelism"),
        (
            &[],
            &[("LANDWATCH_ARGON2_MEMORY_KIB", "lots")],
            "LANDWATCH_ARGON2_MEMORY_KIB",
        ),
    ];
    for (extra, env, named) in refused {
        let (code, out) = add("weak", extra, env);
        assert_eq!(code, 2, "{extra:?} {env:?} accepted: {out}");
        assert!(out.contains(named), "{out}");
    }
    let store = fx.store();
    assert!(
        stored_hash(&store, "costly").contains("m=32768,t=3,p=2"),
        "{}",
        stored_hash(&store, "costly")
    );
    assert!(stored_hash(&store, "from-env").contains("m=19456,t=4,p=1"));
    assert!(stored_hash(&store, "rev").contains("m=19456,t=2,p=1"));
    assert!(landwatch_review::users::user_by_name(&store, "weak").unwrap().is_none());

    // A server with yet another cost: every stored hash still verifies (the PHC string
    // carries its parameters), and users it creates get its cost.
    let options = ServeOptions {
        password_cost: HashCost::new(24576, 3, 1).expect("a valid cost"),
        ..ServeOptions::default()
    };
    assert!(HashCost::new(8192, 2, 1).is_err(), "below the minimum memory");
    let base = fx.start_server_with(options).await;
    Client::login(&base, "costly").await;
    Client::login(&base, "from-env").await;
    let boss = Client::login(&base, "boss").await;
    let r = boss
        .post_json(
            "/api/admin/users",
            &json!({"name": "new-one", "role": "reviewer", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 201);
    Client::login(&base, "new-one").await;
    assert!(stored_hash(&store, "new-one").contains("m=24576,t=3,p=1"));
}
