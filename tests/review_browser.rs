//! Real-browser test of the review page: headless Chromium driven through chromedriver with
//! the W3C WebDriver JSON protocol (spoken directly with reqwest; no extra crate).
//!
//! Needs the Debian packages `chromium` and `chromium-driver`. Without chromedriver the test
//! is SKIPPED (and says so) — except when the environment variable `CI` is set: then it fails,
//! so CI cannot pass without having run it. Override paths with `CHROMEDRIVER` / `CHROME_BIN`.

mod map_support;
mod review_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use landwatch_review::import;
use review_support::*;
use serde_json::{json, Value};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const ENTER: &str = "\u{E007}";

/// Finds an executable: the env override, else the first candidate on PATH.
fn find_exe(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    candidates
        .iter()
        .flat_map(|c| std::env::split_paths(&path).map(move |dir| dir.join(c)))
        .find(|p| p.is_file())
}

/// A chromedriver process with one browser session.
struct Browser {
    child: Child,
    http: reqwest::Client,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn start(driver: &PathBuf, chrome: &PathBuf) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{driver_url}/status")).send().await;
            if let Ok(r) = ready {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--lang=zh-CN",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let resp: Value = http
            .post(format!("{driver_url}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {resp}"))
            .to_string();
        Browser {
            child,
            http,
            url: format!("{driver_url}/session/{session}"),
            _profile: profile,
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("webdriver {path}: {e}"),
        }
    }

    /// One WebDriver command; `Err` carries the driver's error message.
    async fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{}", self.url, path);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        if let Some(err) = v["value"]["error"].as_str() {
            return Err(format!("{err}: {}", v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    async fn current_url(&self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn refresh(&self) {
        self.cmd("POST", "/refresh", json!({})).await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd("POST", "/element", json!({ "using": "css selector", "value": css }))
            .await;
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.cmd("POST", &format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({})).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Presses keys on whatever has focus, as a user would.
    async fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({ "type": "keyDown", "value": k }));
            actions.push(json!({ "type": "keyUp", "value": k }));
        }
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] });
        self.cmd("POST", "/actions", body).await;
    }

    /// Waits until the JS expression is true (20 s), else fails with `what`. Script errors
    /// while waiting (e.g. during a page load) count as "not yet".
    async fn wait_for(&self, expr: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = json!({ "script": format!("return !!({expr});"), "args": [] });
        loop {
            let last = self.try_cmd("POST", "/execute/sync", body.clone()).await;
            if last == Ok(Value::Bool(true)) {
                return;
            }
            if Instant::now() >= deadline {
                let page = self.try_cmd("POST", "/execute/sync", json!({"script": "return location.href + ' ' + document.body.textContent.slice(0, 300)", "args": []})).await;
                panic!("timed out waiting for: {what} ({expr}); last: {last:?}; page: {page:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot into `$REVIEW_SCREENSHOTS/<name>.png` when that variable is set
    /// (for looking at the page by eye; the test does not depend on it).
    async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("REVIEW_SCREENSHOTS") else {
            return;
        };
        let b64 = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = decode_base64(b64.as_str().unwrap_or(""));
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

/// Standard base64 (as WebDriver returns screenshots) to bytes; ignores padding.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | (u32::from(val(*c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// JS: the review status shown for queue item with patch id `pid`.
fn queue_status(pid: i64) -> String {
    format!("(document.querySelector('#queue li[data-id=\"{pid}\"]') || {{dataset: {{}}}}).dataset.status")
}

async fn wait_app_ready(b: &Browser) {
    b.wait_for(
        "document.body.dataset.ready === '1' && document.querySelector('#patch-status').dataset.status",
        "app loaded",
    )
    .await;
}

/// chromedriver and chromium, or `None` (after saying the test `name` is SKIPPED) when
/// chromedriver is missing and `CI` is not set.
fn browser_tools(name: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(driver) = find_exe("CHROMEDRIVER", &["chromedriver"]) else {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but chromedriver is missing: apt-get install -y chromium chromium-driver");
        }
        // Straight to stderr (not eprintln!), so the test harness does not swallow it.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "SKIPPED {name}: chromedriver not found \
                 (apt-get install -y chromium chromium-driver; with CI set this test fails instead)\n"
            )
            .as_bytes(),
        );
        return None;
    };
    let chrome = find_exe("CHROME_BIN", &["chromium", "chromium-browser", "google-chrome"])
        .expect("chromedriver is installed but no chromium binary found (set CHROME_BIN)");
    Some((driver, chrome))
}

/// Logs `name` in through the login form and waits for the app.
async fn log_in(b: &Browser, base: &str, name: &str) {
    b.goto(&format!("{base}/login")).await;
    b.type_into("#login-name", name).await;
    b.type_into("#login-password", PASSWORD).await;
    b.click("#login-submit").await;
    wait_app_ready(b).await;
}

/// JS: true when the open patch is `id`.
/// Patch `id` is selected in the queue and its detail is shown (only then do verdict keys
/// act on it: while the detail loads, the previous patch is still on screen).
fn is_current(id: i64) -> String {
    format!(
        "(document.querySelector('#queue li.current') || {{dataset: {{}}}}).dataset.id === '{id}' \
         && document.getElementById('patch').dataset.id === '{id}' \
         && !document.getElementById('patch').classList.contains('loading')"
    )
}

const QUEUE_LEN: &str = "document.querySelectorAll('#queue li.q-item').length";

#[tokio::test(flavor = "multi_thread")]
async fn keyboard_triage_crosses_page_boundaries() {
    let Some((driver, chrome)) = browser_tools("keyboard_triage_crosses_page_boundaries") else {
        return;
    };
    let fx = Fixture::with_first_run(&grid_specs(450));
    let base = fx.start_server().await;
    let ids: Vec<i64> = {
        let c = Client::login(&base, "rev").await;
        let q = c.get_json("/api/patches?limit=1000").await;
        q["patches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids.len(), 450);
    let b = Browser::start(&driver, &chrome).await;
    log_in(&b, &base, "rev").await;

    // One page of 200 at first, with a way to load more.
    assert_eq!(b.js(&format!("return {QUEUE_LEN}")).await, 200);
    assert_eq!(
        b.js("return document.getElementById('queue-count').textContent").await,
        "(450)"
    );
    assert_eq!(b.js("return !!document.getElementById('queue-more')").await, true);
    assert_eq!(
        b.js("return document.querySelectorAll('#overview svg path').length")
            .await,
        200
    );

    // j on the last loaded patch loads the next page and moves on; k comes back.
    b.click(&format!("#queue li[data-id=\"{}\"]", ids[199])).await;
    b.wait_for(&is_current(ids[199]), "last patch of page 1 open").await;
    b.press(&["j"]).await;
    b.wait_for(
        &format!("{} && {QUEUE_LEN} === 400", is_current(ids[200])),
        "j crosses into page 2",
    )
    .await;
    b.press(&["k"]).await;
    b.wait_for(&is_current(ids[199]), "k back to page 1").await;

    // A verdict moves on without reloading (and losing) the pages already loaded.
    b.press(&["2", ENTER]).await;
    b.wait_for(&format!("{} === 'illegal'", queue_status(ids[199])), "judged")
        .await;
    b.wait_for(&is_current(ids[200]), "moved to the next patch").await;
    assert_eq!(b.js(&format!("return {QUEUE_LEN}")).await, 400);
    b.wait_for(
        "document.querySelector('#counts .st-unreviewed').textContent === '未核 449'",
        "counts refreshed",
    )
    .await;

    // Scrolling to the end of the list loads the rest; then there is no more to load.
    b.js("const q = document.getElementById('queue'); q.scrollTop = q.scrollHeight; q.dispatchEvent(new Event('scroll'));")
        .await;
    b.wait_for(
        &format!("{QUEUE_LEN} === 450 && !document.getElementById('queue-more')"),
        "all pages loaded",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelectorAll('#overview svg path').length")
            .await,
        450
    );
    b.press(&["j"]).await;
    b.wait_for(&is_current(ids[201]), "j still works after loading").await;
    b.screenshot("5-paging").await;

    // A link to a patch on a later page opens that patch.
    b.goto(&format!("{base}/#patch={}", ids[420])).await;
    b.refresh().await;
    wait_app_ready(&b).await;
    b.wait_for(&is_current(ids[420]), "linked patch on page 3 open").await;

    // While the next patch's detail is loading, the previous patch is still on screen: a
    // verdict key then judges nothing (it used to judge the patch left behind). The detail
    // request is held back in the page until the keys have been pressed.
    b.js("window.__held = []; const f = window.fetch; window.fetch = (u, i) => /\\/api\\/patches\\/\\d+$/.test(u) ? new Promise(r => window.__held.push(() => r(f(u, i)))) : f(u, i); return true;")
        .await;
    b.press(&["j"]).await;
    b.wait_for("window.__held.length === 1", "the next detail requested and held")
        .await;
    b.press(&["2", ENTER]).await;
    b.js("window.__held.forEach(go => go()); return true;").await;
    b.wait_for(&is_current(ids[421]), "the next patch shown").await;
    b.press(&["2", ENTER]).await;
    b.wait_for(
        &format!("{} === 'illegal'", queue_status(ids[421])),
        "judged once shown",
    )
    .await;
    assert_eq!(b.js(&format!("return {}", queue_status(ids[420]))).await, "unreviewed");
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reviewer_triages_with_the_keyboard_in_a_real_browser() {
    let Some((driver, chrome)) = browser_tools("reviewer_triages_with_the_keyboard_in_a_real_browser") else {
        return;
    };

    let fx = Fixture::new();
    let base = fx.start_server().await;
    let (a, b_id) = {
        let c = Client::login(&base, "rev").await;
        (row_id(&c, "P0001").await, row_id(&c, "P0002").await)
    };
    let b = Browser::start(&driver, &chrome).await;

    // Without a session the app sends us to the login form, in Chinese.
    b.goto(&format!("{base}/")).await;
    assert!(b.current_url().await.ends_with("/login"));
    assert_eq!(
        b.js("return document.getElementById('login-submit').textContent").await,
        "登录"
    );
    b.type_into("#login-name", "rev").await;
    b.type_into("#login-password", "wrong password").await;
    b.click("#login-submit").await;
    b.wait_for("!document.getElementById('login-error').hidden", "login error shown")
        .await;
    b.type_into("#login-name", "rev").await;
    b.type_into("#login-password", PASSWORD).await;
    b.click("#login-submit").await;
    wait_app_ready(&b).await;

    // The queue, counts, chips, overview; the first patch is open.
    assert_eq!(
        b.js("return document.querySelectorAll('#queue li.q-item').length")
            .await,
        3
    );
    assert_eq!(
        b.js("return document.querySelector('#counts .st-unreviewed').textContent")
            .await,
        "未核 3"
    );
    b.wait_for(&is_current(a), "first patch open").await;
    b.wait_for("document.getElementById('chip-before').naturalWidth === 32 && document.getElementById('chip-after').naturalWidth === 32", "chips loaded").await;
    assert_eq!(
        b.js("return document.querySelectorAll('#overview svg path').length")
            .await,
        3
    );
    assert!(b
        .js("return document.querySelector('.shortcuts').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("下一个"));

    // Markup in an attribute is shown as text and never runs.
    let shown = b
        .js("return document.querySelector('#attrs td[data-field=\"XZQMC\"]').textContent")
        .await;
    assert_eq!(shown, SCRIPT_NAME);
    assert_eq!(b.js("return typeof window.__pwned").await, "undefined");
    assert_eq!(
        b.js("return document.querySelectorAll('#attrs script, #attrs img, #queue script, #queue img').length")
            .await,
        0
    );

    b.screenshot("1-queue").await;

    // j / k move through the queue.
    b.press(&["j"]).await;
    b.wait_for(&is_current(b_id), "j moves to the next patch").await;
    b.press(&["k"]).await;
    b.wait_for(
        &format!(
            "{} && document.getElementById('patch-title').textContent.includes('P0001')",
            is_current(a)
        ),
        "k moves back",
    )
    .await;

    // 2 + Enter: 违法 on the first patch; the view moves on to the next one.
    b.press(&["2", ENTER]).await;
    b.wait_for(
        &format!("{} === 'illegal'", queue_status(a)),
        "first patch judged illegal",
    )
    .await;
    b.wait_for(&is_current(b_id), "moved to the next patch").await;
    // 3 alone is not enough for 其他: a subtype is required; d = 实地未变化.
    b.press(&["3", ENTER]).await;
    b.wait_for(
        "document.getElementById('verdict-msg').classList.contains('error')",
        "subtype required message",
    )
    .await;
    b.press(&["d"]).await;
    b.click("#note").await;
    b.press(&["无", "变", "化"]).await;
    b.press(&["\u{E00C}", ENTER]).await; // Escape leaves the note, Enter saves
    b.wait_for(
        &format!("{} === 'other'", queue_status(b_id)),
        "second patch judged other",
    )
    .await;
    b.screenshot("2-judged").await;
    assert_eq!(
        b.js("return document.querySelector('#counts .st-unreviewed').textContent")
            .await,
        "未核 1"
    );

    // After a reload the verdicts are still there.
    b.refresh().await;
    wait_app_ready(&b).await;
    b.wait_for(
        &format!(
            "{} === 'illegal' && {} === 'other'",
            queue_status(a),
            queue_status(b_id)
        ),
        "verdicts persisted after reload",
    )
    .await;
    b.goto(&format!("{base}/#patch={b_id}")).await;
    b.refresh().await;
    wait_app_ready(&b).await;
    b.wait_for(
        "document.getElementById('patch-status').dataset.status === 'other'",
        "patch view shows the verdict",
    )
    .await;
    let hist = b.js("return document.getElementById('history').textContent").await;
    assert!(
        hist.as_str().unwrap().contains("rev") && hist.as_str().unwrap().contains("无变化"),
        "{hist}"
    );
    assert!(b
        .js("return document.getElementById('patch-status').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("实地未变化"));

    // A rerun is imported: the verdicts stay, the new patch shows up as 未核.
    let mut store = fx.store();
    let report = import::import_run(&mut store, &fx.run2, Some(&fx.data)).expect("import rerun");
    assert_eq!(report.new, 1);
    b.refresh().await;
    wait_app_ready(&b).await;
    assert_eq!(
        b.js("return document.querySelectorAll('#queue li.q-item').length")
            .await,
        4
    );
    b.wait_for(
        &format!(
            "{} === 'illegal' && {} === 'other'",
            queue_status(a),
            queue_status(b_id)
        ),
        "verdicts kept after re-import",
    )
    .await;
    // T-B came back with a shifted outline (IoU ≈ 0.8 with the one judged): flagged for
    // re-review, with a badge, and the filter finds it.
    assert_eq!(report.flagged_for_rereview, 1);
    assert_eq!(
        b.js(&format!(
            "return document.querySelector('#queue li[data-id=\"{b_id}\"] .badge.rereview').textContent"
        ))
        .await,
        "需复核"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#queue li[data-rereview]').length")
            .await,
        1
    );
    b.click("#f-needs_rereview").await;
    b.click("#filters button[type=submit]").await;
    b.wait_for(
        &format!("{QUEUE_LEN} === 1 && {}", is_current(b_id)),
        "only the flagged patch listed",
    )
    .await;
    b.wait_for(
        "!document.getElementById('patch-rereview').hidden",
        "flag shown on the patch",
    )
    .await;
    assert!(b
        .js("return document.getElementById('history').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("轮廓已变化"));
    b.screenshot("3-rereview").await;
    b.click("#f-reset").await;
    b.wait_for(&format!("{QUEUE_LEN} === 4"), "filter reset").await;

    // Switch to English.
    b.js("const s = document.getElementById('lang-select'); s.value = 'en'; s.dispatchEvent(new Event('change'));")
        .await;
    b.wait_for(
        "document.getElementById('save').textContent === 'Save (Enter)'",
        "English labels",
    )
    .await;
    assert_eq!(b.js("return document.documentElement.lang").await, "en");
    b.press(&["s"]).await;
    b.wait_for("!document.getElementById('chips-swipe').hidden", "swipe view")
        .await;
    b.screenshot("4-english-swipe").await;

    // Log out.
    b.click("#logout").await;
    b.wait_for("location.pathname === '/login'", "back at the login form")
        .await;
    b.goto(&format!("{base}/")).await;
    assert!(b.current_url().await.ends_with("/login"));
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn suppressed_patches_are_hidden_by_default_and_shown_under_their_filter() {
    let Some((driver, chrome)) = browser_tools("suppressed_patches_are_hidden_by_default_and_shown_under_their_filter")
    else {
        return;
    };
    let mut specs = first_run_specs();
    for (i, s) in specs.iter_mut().enumerate() {
        s.extra.insert("change_confidence".into(), json!(0.3 + 0.2 * i as f64));
    }
    specs[1].extra.insert("suppressed".into(), json!(true));
    specs[1].extra.insert(
        "suppressed_reason".into(),
        json!("verdict model verdict@t: probability of real change 0.100 < threshold 0.300"),
    );
    let fx = Fixture::with_first_run(&specs);
    let base = fx.start_server().await;
    let b = Browser::start(&driver, &chrome).await;
    log_in(&b, &base, "rev").await;
    let titles = "return Array.from(document.querySelectorAll('#queue li.q-item')).map(li => li.dataset.id).join(',')";
    b.wait_for(
        &format!("{QUEUE_LEN} === 2"),
        "the suppressed patch is not in the default queue",
    )
    .await;
    let default_ids = b.js(titles).await;
    assert!(
        !default_ids.as_str().unwrap().split(',').any(|id| id == "2"),
        "{default_ids}"
    );

    b.js("document.getElementById('f-suppressed').value = 'only'; document.getElementById('filters').requestSubmit();")
        .await;
    b.wait_for(
        &format!("{QUEUE_LEN} === 1 && !!document.querySelector('#queue li.q-item .badge.suppressed')"),
        "only the suppressed patch, with its badge",
    )
    .await;
    assert_eq!(b.js(titles).await, "2");
    assert_eq!(
        b.js("return document.querySelector('#queue li.q-item .badge.suppressed').title")
            .await,
        "verdict model verdict@t: probability of real change 0.100 < threshold 0.300"
    );

    // Everything, most confident first.
    b.js("document.getElementById('f-suppressed').value = 'include'; document.getElementById('f-sort').value = 'confidence_desc'; document.getElementById('filters').requestSubmit();")
        .await;
    b.wait_for(&format!("{QUEUE_LEN} === 3"), "all three").await;
    assert_eq!(b.js(titles).await, "3,2,1");
    b.screenshot("6-suppressed").await;
    b.quit().await;
}

// ---- the map (issue 16) ---------------------------------------------------------------

/// JS: tiles of `date` loaded into the map, with the server's 256² images.
fn tiles_loaded(date: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('.leaflet-{date}-pane img.leaflet-tile-loaded'))\
         .filter(i => i.naturalWidth === 256 && i.src.includes('/tiles/1/{date}/')).length > 0"
    )
}

/// Runs `script` (which gets a callback as `done`) in the page and returns its result.
async fn run_async(b: &Browser, script: &str) -> Value {
    let body = json!({ "script": format!("const done = arguments[arguments.length - 1]; {script}"), "args": [] });
    b.cmd("POST", "/execute/async", body).await
}

/// JS: the status of a GET of `path` from the page (with its session cookie).
fn fetch_status(path: &str) -> String {
    format!("fetch('{path}', {{credentials: 'same-origin'}}).then(r => done(r.status), e => done(String(e)));")
}

/// Clicks the map at lon/lat as a user would (pointer actions relative to the map's centre).
async fn click_map_at(b: &Browser, lon: f64, lat: f64) {
    let at = b
        .js(&format!(
            "const m = window.landwatchMap, p = m.latLngToContainerPoint([{lat}, {lon}]), s = m.getSize();\
             return [Math.round(p.x - s.x / 2), Math.round(p.y - s.y / 2)];"
        ))
        .await;
    let map = b.element("#map").await;
    let origin = json!({ ELEMENT_KEY: map });
    let actions = json!({ "actions": [{ "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [
            { "type": "pointerMove", "origin": origin, "x": at[0], "y": at[1], "duration": 50 },
            { "type": "pointerDown", "button": 0 }, { "type": "pointerUp", "button": 0 }
        ] }] });
    b.cmd("POST", "/actions", actions).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_map_shows_both_dates_swipes_and_selects_patches_on_click() {
    let Some((driver, chrome)) = browser_tools("the_map_shows_both_dates_swipes_and_selects_patches_on_click") else {
        return;
    };
    let fx = Fixture::new();
    let (before, after) = map_support::write_scene(&fx.data, &fx.run1, 1024);
    map_support::write_landuse(&fx.data, &fx.run1, &before, &after);
    let base = fx.start_server().await;
    let (p1, p2, p3) = {
        let c = Client::login(&base, "rev").await;
        (
            row_id(&c, "P0001").await,
            row_id(&c, "P0002").await,
            row_id(&c, "P0003").await,
        )
    };
    // A field-check result for P0001, as `field-import` stores it (see tests/review_field.rs).
    let photo = {
        let img = image::RgbImage::from_fn(60, 40, |x, y| image::Rgb([120 + x as u8, 90 + y as u8, 60]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).expect("png");
        out.into_inner()
    };
    fx.store()
        .conn()
        .execute(
            "INSERT INTO field_evidence (patch_id, imported_at, package, verdict, note, photo, photo_type,
                                         photo_name, lon, lat, taken_at)
             VALUES (?1, '2026-10-13T02:00:00Z', 'field.gpkg', 'illegal', '新建厂房', ?2, 'image/png',
                     'IMG_0001.png', 108.3004, 22.8006, '2026-10-12T09:30:00+08:00')",
            rusqlite::params![p1, photo],
        )
        .expect("field evidence");
    let b = Browser::start(&driver, &chrome).await;
    log_in(&b, &base, "rev").await;

    // The patch's field-check photo and note show under the map.
    b.wait_for(
        "Array.from(document.querySelectorAll('#field-evidence figure')).some(f => \
         f.querySelector('img') && f.querySelector('img').naturalWidth === 60 && f.textContent.includes('违法 · ') && f.textContent.includes('新建厂房')) \
         && document.querySelector('#field-evidence h3').textContent === '实地核查'",
        "field evidence shown",
    )
    .await;

    // The map opens on the selected patch with the imagery of both dates and the outlines.
    b.wait_for("document.getElementById('map').dataset.ready === '1'", "map ready")
        .await;
    b.wait_for(&tiles_loaded("before"), "before tiles").await;
    b.wait_for(&tiles_loaded("after"), "after tiles").await;
    b.wait_for(
        "Number(document.getElementById('map').dataset.patches) >= 1",
        "outlines",
    )
    .await;
    let p1_in_view = "window.landwatchMap.getBounds().contains([22.8005, 108.3005])";
    assert_eq!(b.js(&format!("return {p1_in_view}")).await, true);

    // The swipe moves the divider and the after date's clip with it.
    let clip = "document.querySelector('.leaflet-after-pane .leaflet-layer').style.clip";
    let clip_at_half = b.js(&format!("return {clip}")).await;
    b.js("const r = document.getElementById('map-swipe'); r.value = 20; r.dispatchEvent(new Event('input'));")
        .await;
    assert_eq!(b.js("return document.getElementById('map').dataset.swipe").await, "20");
    let clip_at_20 = b.js(&format!("return {clip}")).await;
    assert_ne!(clip_at_half, clip_at_20, "the clip follows the swipe");
    let divider = b
        .js("const m = document.getElementById('map'); return Math.abs(document.querySelector('.map-divider').offsetLeft - m.clientWidth * 0.2) <= 2")
        .await;
    assert_eq!(divider, true, "the divider sits at 20 %");

    // The pointer's position reads as CGCS2000 lon/lat.
    click_map_at(&b, 108.3015, 22.8015).await;
    b.wait_for(
        "document.querySelector('.map-coords').textContent.startsWith('CGCS2000 108.30')",
        "pointer coordinates",
    )
    .await;

    // Clicking a patch on the map opens it in the queue.
    b.js("window.landwatchMap.setView([22.8055, 108.3105], 17, {animate: false});")
        .await;
    b.wait_for(
        "document.getElementById('map').dataset.patches >= 1",
        "outlines around P0002",
    )
    .await;
    b.wait_for(
        "(() => { let n = 0; window.landwatchMap.eachLayer(l => { if (l.feature && l.feature.properties.patch_id === 'P0002') n++; }); return n; })() === 1",
        "P0002 outline loaded",
    )
    .await;
    click_map_at(&b, 108.3105, 22.8055).await;
    b.wait_for(&is_current(p2), "P0002 selected from the map").await;

    // Keyboard triage still works, and selecting in the queue pans the map.
    b.press(&["j"]).await;
    b.wait_for(&is_current(p3), "next patch with j").await;
    b.wait_for(
        "window.landwatchMap.getBounds().contains([22.8105, 108.3205])",
        "map on P0003",
    )
    .await;
    b.press(&["k", "k"]).await;
    b.wait_for(&is_current(p1), "back to P0001").await;
    b.wait_for(p1_in_view, "map on P0001").await;

    // Land-use parcels with their DLBM labels, on demand.
    b.js("document.querySelectorAll('.leaflet-control-layers-overlays input')[3].click();")
        .await;
    b.js("document.getElementById('map-labels').click();").await;
    b.wait_for(
        "Array.from(document.querySelectorAll('.dlbm-label')).some(l => l.textContent.startsWith('0101'))",
        "DLBM labels",
    )
    .await;
    b.js("const r = document.getElementById('map-swipe'); r.value = 50; r.dispatchEvent(new Event('input'));")
        .await;
    b.wait_for(&tiles_loaded("after"), "after tiles again").await;
    save_map_screenshot(&b).await;

    // A map token for QGIS from the page: the WMTS address is shown once.
    b.js("window.prompt = () => 'QGIS test';").await;
    b.click("#map-token").await;
    b.wait_for(
        "document.getElementById('map-token-url').value.includes('/wmts/t/lwm')",
        "WMTS address shown",
    )
    .await;

    // Tiles: unknown run and a path outside the data folder are 404; after logout, 401.
    assert_eq!(
        run_async(&b, &fetch_status("/tiles/99/before/14/13315/7118.png")).await,
        404
    );
    assert_eq!(
        run_async(&b, &fetch_status("/tiles/1/before/%2e%2e/%2e%2e/etc/passwd")).await,
        404
    );
    let (x, y) = map_support::tile_of(108.3005, 22.8005, 14);
    let tile = format!("/tiles/1/after/14/{x}/{y}.png");
    assert_eq!(run_async(&b, &fetch_status(&tile)).await, 200);
    b.click("#logout").await;
    b.wait_for("location.pathname === '/login'", "logged out").await;
    assert_eq!(run_async(&b, &fetch_status(&tile)).await, 401);
    b.quit().await;
}

/// The map's screenshot: a real PNG of the window; written to docs/review-map.png (for the
/// README) when `LANDWATCH_DOCS_SCREENSHOTS` is set, so ordinary runs leave the tree clean.
async fn save_map_screenshot(b: &Browser) {
    let b64 = b.cmd("GET", "/screenshot", Value::Null).await;
    let png = decode_base64(b64.as_str().unwrap_or(""));
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("screenshot is a PNG");
    assert!(
        img.width() >= 1000,
        "screenshot of the window ({} px wide)",
        img.width()
    );
    if std::env::var_os("LANDWATCH_DOCS_SCREENSHOTS").is_some() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/review-map.png");
        std::fs::write(&path, png).expect("write docs/review-map.png");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_map_draws_5000_patches_in_view_and_pans() {
    let Some((driver, chrome)) = browser_tools("the_map_draws_5000_patches_in_view_and_pans") else {
        return;
    };
    let fx = Fixture::with_first_run(&grid_specs(5000));
    let base = fx.start_server().await;
    let b = Browser::start(&driver, &chrome).await;
    log_in(&b, &base, "rev").await;
    b.wait_for("document.getElementById('map').dataset.ready === '1'", "map ready")
        .await;
    // The whole grid (0.1° × 0.2°) in view: every outline loaded onto the canvas.
    b.js("window.landwatchMap.fitBounds([[22.0, 108.0], [22.2, 108.1]], {animate: false});")
        .await;
    b.wait_for(
        "document.getElementById('map').dataset.patches === '5000'",
        "5000 outlines",
    )
    .await;
    // A pan and the two frames after it (the canvas redraws on the next frame), averaged.
    let ms = run_async(
        &b,
        "const m = window.landwatchMap; let n = 0, total = 0;\
         const step = () => { const t0 = performance.now(); m.panBy([n % 2 ? -150 : 150, 0], {animate: false});\
           requestAnimationFrame(() => requestAnimationFrame(() => { total += performance.now() - t0;\
             if (++n < 10) step(); else done(total / n); })); };\
         step();",
    )
    .await
    .as_f64()
    .expect("milliseconds");
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("map with 5000 patches in view: {ms:.0} ms per pan and redraw\n").as_bytes(),
    );
    // The time is reported, not asserted (the project measures speed outside its tests); what is
    // asserted is that every pan and redraw completed.
    assert!(ms.is_finite() && ms > 0.0, "the pans did not complete: {ms}");
    b.quit().await;
}
