//! The review server under abuse: password guessing (throttling, lock-out, logging), a login
//! flood next to ordinary use, stalled connections, oversized bodies, foreign Host names
//! (DNS rebinding), cookies behind HTTPS and control characters in free text.
//!
//! Clients pretend to come from different machines by binding other loopback addresses
//! (127.0.0.2, 127.0.0.3, …), which Linux routes to the server on 127.0.0.1.

mod review_support;

use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use landwatch_review::web::throttle::LoginLimits;
use landwatch_review::web::ServeOptions;
use review_support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Failures per account before it is locked, in these tests' server options.
const ACCOUNT_LIMIT: usize = 5;
/// Failures per address before it is locked, in these tests' server options.
const ADDRESS_LIMIT: usize = 8;

/// Server options for these tests: short timeouts and lock-outs so nothing waits long.
fn options() -> ServeOptions {
    options_with_lockout(Duration::from_secs(1))
}

/// [`options`] with lock-outs of `lockout` (for tests that must finish inside one).
fn options_with_lockout(lockout: Duration) -> ServeOptions {
    ServeOptions {
        login_limits: LoginLimits {
            max_failures_per_account: ACCOUNT_LIMIT as u32,
            max_failures_per_address: ADDRESS_LIMIT as u32,
            window: Duration::from_secs(60),
            lockout,
            lockout_max: lockout * 4,
        },
        ..ServeOptions::default()
    }
}

/// [`options`] with one-second header-read and request timeouts.
fn options_with_short_timeouts() -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        ..options()
    }
}

/// An HTTP client whose connections come from `ip` (a loopback address).
fn http_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .build()
        .expect("client")
}

/// Posts the login form from `ip` as a same-origin browser would.
async fn login_from(ip: &str, base: &str, name: &str, password: &str) -> reqwest::Response {
    post_login_as(&http_from(ip), base, base, None, name, password)
        .await
        .unwrap_or_else(|e| panic!("login request from {ip}: {e:?}"))
}

/// Where a login answer sends the browser (empty when it is not a redirect).
fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Asserts a lock-out answer: 429 with a positive `Retry-After` (seconds); returns it.
fn assert_locked(r: &reqwest::Response) -> u64 {
    assert_eq!(
        r.status(),
        429,
        "expected a lock-out, got {} {:?}",
        r.status(),
        location(r)
    );
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    retry
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_a_password_locks_the_account_with_429_and_retry_after() {
    let fx = Fixture::new();
    let base = fx.start_server_with(options()).await;
    // Eight parallel guessers, as in the measured attack.
    let guesses = (0..40).map(|i| {
        let base = base.clone();
        async move { login_from("127.0.0.2", &base, "rev", &format!("guess number {i}")).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let refused = answers.iter().filter(|r| r.status() == 429).count();
    let checked = answers.len() - refused;
    for r in answers.iter().filter(|r| r.status() != 429) {
        assert_eq!(location(r), "/login?error=1");
    }
    // Attempts count before their password is checked, so parallel guessers cannot all
    // slip in before the first failure is recorded.
    assert_eq!(checked, ACCOUNT_LIMIT, "guesses that had their password checked");
    // Now even the right password is refused for a while, from anywhere not known.
    let r = login_from("127.0.0.3", &base, "rev", PASSWORD).await;
    let retry = assert_locked(&r);
    let body = r.text().await.unwrap();
    assert!(body.contains("try again"), "{body}");
    // The lock-out is temporary: after Retry-After the right password works again.
    tokio::time::sleep(Duration::from_millis(retry * 1000 + 200)).await;
    let r = login_from("127.0.0.3", &base, "rev", PASSWORD).await;
    assert_eq!(location(&r), "/", "login after the lock-out ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_account_still_lets_its_user_in_from_an_address_it_logged_in_from() {
    let fx = Fixture::new();
    let base = fx
        .start_server_with(options_with_lockout(Duration::from_secs(30)))
        .await;
    let r = login_from("127.0.0.1", &base, "rev", PASSWORD).await;
    assert_eq!(location(&r), "/");
    for i in 0..ACCOUNT_LIMIT {
        let r = login_from("127.0.0.2", &base, "rev", &format!("wrong {i}")).await;
        assert_eq!(location(&r), "/login?error=1");
    }
    assert_locked(&login_from("127.0.0.2", &base, "rev", "wrong again").await);
    assert_locked(&login_from("127.0.0.3", &base, "rev", PASSWORD).await);
    // The attacker cannot keep the user out of the machine they work at.
    let r = login_from("127.0.0.1", &base, "rev", PASSWORD).await;
    assert_eq!(location(&r), "/", "known address, right password");
    // Other accounts are not affected.
    let r = login_from("127.0.0.3", &base, "boss", PASSWORD).await;
    assert_eq!(location(&r), "/");
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_across_many_names_locks_the_address() {
    let fx = Fixture::new();
    let base = fx
        .start_server_with(options_with_lockout(Duration::from_secs(30)))
        .await;
    for i in 0..ADDRESS_LIMIT {
        let r = login_from("127.0.0.4", &base, &format!("name{i}"), "wrong password").await;
        assert_eq!(location(&r), "/login?error=1");
    }
    assert_locked(&login_from("127.0.0.4", &base, "rev", PASSWORD).await);
    let r = login_from("127.0.0.5", &base, "rev", PASSWORD).await;
    assert_eq!(location(&r), "/", "another address is not locked");
}

/// Captured log lines of this test binary (one global subscriber, installed once).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogSink(Arc::clone(&sink)))
            .try_init();
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text(logs: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&logs.lock().expect("log buffer")).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_logged_with_name_and_address_but_never_the_password() {
    let logs = captured_logs();
    let fx = Fixture::new();
    let base = fx
        .start_server_with(options_with_lockout(Duration::from_secs(30)))
        .await;
    let secret = "Hunter2-never-in-logs";
    let name = "mal\u{202e}lory\nFAKE LOG LINE";
    let r = login_from("127.0.0.6", &base, name, secret).await;
    assert_eq!(location(&r), "/login?error=1");
    for i in 0..ACCOUNT_LIMIT {
        login_from("127.0.0.6", &base, "lockme", &format!("{secret}{i}")).await;
    }
    let text = log_text(&logs);
    let failed: Vec<&str> = text.lines().filter(|l| l.contains("failed login")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("mal\\u{202e}lory\\nFAKE LOG LINE") && l.contains("127.0.0.6")),
        "escaped name and address in a failed-login line:\n{text}"
    );
    assert!(
        !text.contains('\u{202e}') && !text.contains("\nFAKE LOG LINE"),
        "{text}"
    );
    assert!(!text.contains(secret), "the password leaked into the log:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("locked") && l.contains("lockme")),
        "a warning when the account is locked:\n{text}"
    );
}

/// Makes `name`'s password take about `target` to verify (argon2 with a high time cost;
/// the cost is stored in the hash, so the server's verification is just as slow).
fn make_password_slow(fx: &Fixture, name: &str, target: Duration) -> Duration {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let hash_with = |t_cost: u32| {
        let params = argon2::Params::new(19456, t_cost, 1, None).expect("params");
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let start = Instant::now();
        let phc = a.hash_password(PASSWORD.as_bytes(), &salt).expect("hash").to_string();
        (phc, start.elapsed())
    };
    let (_, base_time) = hash_with(2);
    let t_cost = (2.0 * target.as_secs_f64() / base_time.as_secs_f64().max(1e-4)).clamp(2.0, 4000.0) as u32;
    let (phc, took) = hash_with(t_cost);
    fx.store()
        .conn()
        .execute("UPDATE users SET password_hash = ?1 WHERE name = ?2", [&phc, name])
        .expect("store slow hash");
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_flood_does_not_stall_other_users() {
    let fx = Fixture::new();
    let verify_time = make_password_slow(&fx, "boss", Duration::from_millis(2000));
    let base = fx.start_server_with(options()).await;
    let rev = Client::login(&base, "rev").await;
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..4)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                let ip = format!("127.0.0.{}", 20 + i);
                login_from(&ip, &base, "boss", "a wrong password").await.status()
            })
        })
        .collect();
    // Let the verifications start, then use the app as a reviewer would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let queue = rev.get("/api/patches").await;
    let waited = asked.elapsed();
    assert_eq!(queue.status(), 200);
    for f in flood {
        f.await.expect("flood task");
    }
    let flood_took = flood_started.elapsed();
    assert!(
        waited < verify_time / 2,
        "the queue took {waited:?} while passwords were checked \
         (one check takes {verify_time:?}, the flood {flood_took:?})"
    );
}

/// Reads what the server sends until it closes the connection or `limit` passes;
/// returns the bytes and whether it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_partial_request_is_closed_after_the_header_read_timeout() {
    let fx = Fixture::new();
    let base = fx.start_server_with(options_with_short_timeouts()).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
        .await
        .expect("partial request");
    // A connection that sends nothing at all is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(6)).await;
    assert!(
        closed,
        "a half-sent request still holds its connection after {:?}",
        started.elapsed()
    );
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(6)).await;
    assert!(closed, "an idle connection is still open after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_body_stalls_gets_408_after_the_request_timeout() {
    let fx = Fixture::new();
    let base = fx.start_server_with(options_with_short_timeouts()).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nOrigin: {base}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=rev&"
    );
    stream.write_all(head.as_bytes()).await.expect("partial body");
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(6)).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "answer to a stalled body: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413() {
    let fx = Fixture::new();
    let base = fx.start_server_with(options()).await;
    let rev = Client::login(&base, "rev").await;
    let id = row_id(&rev, "P0002").await;
    let huge = json!({"status": "illegal", "note": "x".repeat(200 * 1024)});
    let r = rev.post_json(&format!("/api/patches/{id}/verdict"), &huge).await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.expect("json error");
    assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// `GET /login` with the given `Host` header; returns the status.
async fn get_login_with_host(base: &str, host: &str) -> u16 {
    http()
        .get(format!("{base}/login"))
        .header("Host", host)
        .send()
        .await
        .expect("GET /login")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_for_foreign_host_names_are_refused() {
    let fx = Fixture::new();
    let base = fx.start_server_with(options()).await;
    let port = base.rsplit(':').next().expect("port").to_string();
    // A rebinding page: attacker.example resolves to 127.0.0.1 after the page loaded.
    assert_eq!(
        get_login_with_host(&base, &format!("attacker.example:{port}")).await,
        421
    );
    for ok in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(get_login_with_host(&base, &ok).await, 200, "Host {ok}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_public_origin_makes_the_session_cookie_secure() {
    let fx = Fixture::new();
    let mut o = options();
    o.public_origin = Some("https://review.example.gov.cn".into());
    let base = fx.start_server_with(o).await;
    let origin = "https://review.example.gov.cn";
    let r = post_login_as(&http(), &base, origin, Some("review.example.gov.cn"), "rev", PASSWORD)
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Over plain http (no public origin, no --secure-cookie) the cookie cannot be Secure.
    let base = fx.start_server_with(options()).await;
    let r = post_login(&base, "rev", PASSWORD).await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread")]
async fn control_and_bidi_characters_are_refused_in_notes_and_names() {
    let fx = Fixture::new();
    let base = fx.start_server_with(options()).await;
    let boss = Client::login(&base, "boss").await;
    let id = row_id(&boss, "P0001").await;
    let verdict = format!("/api/patches/{id}/verdict");
    for bad in [
        "a\u{0}b",
        "bell\u{7}",
        "cr\rhere",
        "rtl \u{202e}gnp.exe",
        "iso\u{2066}late",
        "del\u{7f}",
    ] {
        let r = boss
            .post_json(&verdict, &json!({"status": "illegal", "note": bad}))
            .await;
        assert_eq!(r.status(), 400, "note {bad:?}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("note"), "{body}");
    }
    let r = boss
        .post_json(&verdict, &json!({"status": "illegal", "note": "第一行\n第二行\t(tab)"}))
        .await;
    assert_eq!(r.status(), 200, "newline and tab are fine in a note");
    let r = boss
        .post_json(&format!("/api/patches/{id}/reopen"), &json!({"note": "x\u{1b}[31m"}))
        .await;
    assert_eq!(r.status(), 400);
    let r = boss
        .post_json(
            "/api/admin/users",
            &json!({"name": "ad\u{202e}nimda", "role": "reviewer", "password": "longenough1"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("name"), "{body}");
}
