//! Security and behaviour tests of the review server, in process on 127.0.0.1:
//! sessions, roles, CSRF/Origin, escaping, chip paths, bad input, the audit trail,
//! re-import and export.

mod review_support;

use landwatch_review::{import, Store};
use review_support::*;
use serde_json::{json, Value};

/// Asserts a 4xx answer with a JSON `{"error": "..."}` body (never a 500 or a trace).
async fn assert_json_error(resp: reqwest::Response, status: u16) -> String {
    assert_json_error_in(resp, &[status]).await
}

/// Like [`assert_json_error`], accepting any of `statuses` (axum answers some JSON shape
/// errors with 400 and others with 422).
async fn assert_json_error_in(resp: reqwest::Response, statuses: &[u16]) -> String {
    assert!(
        statuses.contains(&resp.status().as_u16()),
        "status {} not in {statuses:?}",
        resp.status()
    );
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ctype.starts_with("application/json"), "content-type {ctype}");
    let body: Value = resp.json().await.expect("json error body");
    let msg = body["error"].as_str().expect("error message").to_string();
    assert!(!msg.is_empty());
    assert!(!msg.contains("panicked") && !msg.contains("backtrace"), "{msg}");
    msg
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_session_get_401_or_a_redirect_to_login() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let h = http();
    for path in [
        "/api/patches",
        "/api/me",
        "/api/patches/1",
        "/api/patches/1/chip/before",
        "/api/overview",
        "/api/export?format=csv",
        "/api/admin/users",
    ] {
        let r = h.get(format!("{base}{path}")).send().await.unwrap();
        assert_json_error(r, 401).await;
    }
    let r = h.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    // The login page itself is reachable.
    let r = h.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A same-origin POST without a session is 401 too.
    let r = h
        .post(format!("{base}/api/patches/1/verdict"))
        .header("Origin", &base)
        .header("Content-Type", "application/json")
        .body(json!({"status": "illegal"}).to_string())
        .send()
        .await
        .unwrap();
    assert_json_error(r, 401).await;
    // A forged cookie is no session.
    let r = h
        .get(format!("{base}/api/patches"))
        .header("Cookie", "lw_session=deadbeef")
        .send()
        .await
        .unwrap();
    assert_json_error(r, 401).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_sets_a_strict_httponly_cookie_and_wrong_password_fails() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let r = post_login(&base, "rev", "wrong password").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?error=1");
    assert!(r.headers().get("set-cookie").is_none());
    let r = post_login(&base, "nobody", PASSWORD).await;
    assert_eq!(r.headers()["location"], "/login?error=1");

    let r = post_login(&base, "rev", PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("lw_session="));
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secure_cookie_and_public_origin_options() {
    let fx = Fixture::new();
    let options = landwatch_review::web::ServeOptions {
        secure_cookie: true,
        public_origin: Some("https://review.example.gov.cn".into()),
        ..Default::default()
    };
    let base = fx.start_server_with(options).await;
    // Behind a proxy only the public origin may post, not the raw Host.
    let r = post_login(&base, "rev", PASSWORD).await;
    assert_json_error(r, 403).await;
    let r = post_login_as(&http(), &base, "https://review.example.gov.cn", None, "rev", PASSWORD)
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_session() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let r = c.post_json("/logout", &json!({})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_json_error(c.get("/api/me").await, 401).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_cannot_reach_admin_actions_but_an_admin_can() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let rev = Client::login(&base, "rev").await;
    let id = row_id(&rev, "P0001").await;
    assert_json_error(rev.get("/api/admin/users").await, 403).await;
    let new_user = json!({"name": "mallory", "role": "admin", "password": "longenough1"});
    assert_json_error(rev.post_json("/api/admin/users", &new_user).await, 403).await;
    assert_json_error(
        rev.post_json("/api/admin/users/1/disabled", &json!({"disabled": true}))
            .await,
        403,
    )
    .await;
    let r = rev
        .post_json(&format!("/api/patches/{id}/verdict"), &json!({"status": "illegal"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_json_error(
        rev.post_json(&format!("/api/patches/{id}/reopen"), &json!({"note": "x"}))
            .await,
        403,
    )
    .await;
    // Nothing of that happened:
    let store = fx.store();
    assert!(landwatch_review::users::user_by_name(&store, "mallory")
        .unwrap()
        .is_none());

    let boss = Client::login(&base, "boss").await;
    let users = boss.get_json("/api/admin/users").await;
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    let r = boss
        .post_json(
            "/api/admin/users",
            &json!({"name": "new", "role": "reviewer", "password": "longenough1"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = boss
        .post_json(&format!("/api/patches/{id}/reopen"), &json!({"note": "recheck"}))
        .await;
    assert_eq!(r.status(), 200);
    let d = boss.get_json(&format!("/api/patches/{id}")).await;
    assert_eq!(d["current"]["status"], "unreviewed");
    // Disabling a user ends their session at once.
    let rev_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "rev")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = boss
        .post_json(
            &format!("/api/admin/users/{rev_id}/disabled"),
            &json!({"disabled": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_json_error(rev.get("/api/me").await, 401).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_site_posts_are_refused() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let id = row_id(&c, "P0001").await;
    let path = format!("/api/patches/{id}/verdict");
    let body = json!({"status": "illegal"}).to_string();
    let ct = "application/json";
    // Missing token, wrong token, token of another session.
    assert_json_error(c.post_raw(&path, Some(&base), None, ct, body.clone()).await, 403).await;
    assert_json_error(
        c.post_raw(&path, Some(&base), Some("0000"), ct, body.clone()).await,
        403,
    )
    .await;
    let other = Client::login(&base, "boss").await;
    assert_json_error(
        c.post_raw(&path, Some(&base), Some(&other.csrf), ct, body.clone())
            .await,
        403,
    )
    .await;
    // Right token but a foreign Origin, or a browser saying the request is cross-site.
    assert_json_error(
        c.post_raw(&path, Some("http://evil.example"), Some(&c.csrf), ct, body.clone())
            .await,
        403,
    )
    .await;
    assert_json_error(
        c.post_raw(&path, Some("null"), Some(&c.csrf), ct, body.clone()).await,
        403,
    )
    .await;
    let r = c
        .http
        .post(format!("{base}{path}"))
        .header("Cookie", &c.cookie)
        .header("X-CSRF-Token", &c.csrf)
        .header("Sec-Fetch-Site", "cross-site")
        .header("Content-Type", ct)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_json_error(r, 403).await;
    // A classic cross-site HTML form post (urlencoded, foreign origin, no token).
    let form = c
        .post_raw(
            &path,
            Some("http://evil.example"),
            None,
            "application/x-www-form-urlencoded",
            "status=illegal".into(),
        )
        .await;
    assert_json_error(form, 403).await;
    // Login form posted from another site.
    let r = http()
        .post(format!("{base}/login"))
        .header("Origin", "http://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("name=rev&password={}", form_encode(PASSWORD)))
        .send()
        .await
        .unwrap();
    assert_json_error(r, 403).await;
    // None of these recorded anything.
    let d = c.get_json(&format!("/api/patches/{id}")).await;
    assert_eq!(d["history"].as_array().unwrap().len(), 0);
    // Logout needs the token too.
    assert_json_error(c.post_raw("/logout", Some(&base), None, ct, "{}".into()).await, 403).await;
    // The same request done properly works.
    let r = c.post_raw(&path, Some(&base), Some(&c.csrf), ct, body).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn markup_in_attributes_comes_back_as_data_and_pages_forbid_inline_script() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let id = row_id(&c, "P0001").await;
    let r = c.get(&format!("/api/patches/{id}")).await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["properties"]["XZQMC"], SCRIPT_NAME);
    let page = c.get("/").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("__pwned"),
        "the page is static; data is never templated into it"
    );
    // The app builds the DOM with textContent only (no innerHTML anywhere).
    let js = c.get("/static/app.js").await.text().await.unwrap();
    assert!(!js.contains("innerHTML") && !js.contains("insertAdjacentHTML") && !js.contains("document.write"));
}

#[tokio::test(flavor = "multi_thread")]
async fn chips_are_served_only_from_inside_the_data_folder() {
    let fx = Fixture::new();
    // A hostile run: chip paths with .., absolute, and a symlink leading out of data/.
    let evil = fx.data.join("evil");
    let mut a = PatchSpec::new("E0001", "E-A", 109.0, 23.0);
    a.chip_before = "../run1/../../secret.png".into();
    a.chip_after = "/etc/passwd".into();
    let mut b = PatchSpec::new("E0002", "E-B", 109.1, 23.0);
    b.chip_before = "chips/link.png".into();
    b.chip_after = "chips/E0002_after.png".into();
    write_run(&evil, &[a, b]);
    std::fs::write(fx.tmp.path().join("secret.png"), b"top secret").unwrap();
    std::fs::remove_file(evil.join("chips/link.png")).unwrap();
    std::os::unix::fs::symlink(fx.tmp.path().join("secret.png"), evil.join("chips/link.png")).unwrap();
    let mut store = fx.store();
    let report = import::import_run(&mut store, &evil, Some(&fx.data)).unwrap();
    assert_eq!(report.unsafe_chip_paths, 1);

    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let good = row_id(&c, "P0001").await;
    let r = c.get(&format!("/api/patches/{good}/chip/before")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(&r.bytes().await.unwrap()[1..4], b"PNG");

    let e1 = row_id(&c, "E0001").await;
    let e2 = row_id(&c, "E0002").await;
    for path in [
        format!("/api/patches/{e1}/chip/before"),
        format!("/api/patches/{e1}/chip/after"),
        format!("/api/patches/{e2}/chip/before"),
    ] {
        let r = c.get(&path).await;
        assert_json_error(r, 403).await;
    }
    assert_eq!(c.get(&format!("/api/patches/{e2}/chip/after")).await.status(), 200);
    // The chip name in the URL is not a path at all.
    assert_json_error(
        c.get(&format!("/api/patches/{good}/chip/..%2F..%2Fsecret.png")).await,
        400,
    )
    .await;
    assert_json_error(c.get(&format!("/api/patches/{good}/chip/%2Fetc%2Fpasswd")).await, 400).await;
    assert_eq!(
        c.get(&format!("/api/patches/{good}/chip/../../../etc/passwd"))
            .await
            .status()
            .as_u16()
            / 100,
        4
    );
    assert_json_error(c.get("/api/patches/999999/chip/before").await, 404).await;
    // Unknown static files are not looked up on disk either.
    assert_eq!(c.get("/static/..%2F..%2FCargo.toml").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_and_unknown_ids_get_4xx_with_a_message() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let id = row_id(&c, "P0002").await;
    let path = format!("/api/patches/{id}/verdict");
    let ct = "application/json";
    let post = |body: &str| c.post_raw(&path, Some(&base), Some(&c.csrf), ct, body.to_string());
    assert_json_error(post("{not json").await, 400).await;
    assert_json_error(post("").await, 400).await;
    assert_json_error_in(post(r#"{"status": 7}"#).await, &[400, 422]).await;
    assert_json_error_in(post(r#"{"status": "burned"}"#).await, &[400, 422]).await;
    assert_json_error_in(post(r#"{"status": "illegal", "extra": 1}"#).await, &[400, 422]).await;
    let msg = assert_json_error(post(r#"{"status": "legal", "subtype": "实地未变化"}"#).await, 400).await;
    assert!(msg.contains("subtype"), "{msg}");
    assert_json_error(post(r#"{"status": "unreviewed"}"#).await, 400).await;
    let long_note = json!({"status": "illegal", "note": "x".repeat(5000)}).to_string();
    assert_json_error(post(&long_note).await, 400).await;
    let wrong_type = c
        .post_raw(
            &path,
            Some(&base),
            Some(&c.csrf),
            "text/plain",
            r#"{"status":"illegal"}"#.into(),
        )
        .await;
    assert_json_error(wrong_type, 415).await;

    assert_json_error(c.get("/api/patches/999999").await, 404).await;
    assert_json_error(c.get("/api/patches/abc").await, 400).await;
    assert_json_error(c.get("/api/patches/-1").await, 404).await;
    assert_json_error(
        c.post_json("/api/patches/999999/verdict", &json!({"status": "illegal"}))
            .await,
        404,
    )
    .await;
    assert_json_error(c.get("/api/nothing-here").await, 404).await;
    let put = c
        .http
        .put(format!("{base}/api/patches/{id}"))
        .header("Cookie", &c.cookie)
        .header("Origin", &base)
        .header("X-CSRF-Token", &c.csrf)
        .send()
        .await
        .unwrap();
    assert_json_error(put, 405).await;
    assert_json_error(c.get("/api/patches?min_area=abc").await, 400).await;
    assert_json_error(c.get("/api/patches?status=maybe").await, 400).await;
    assert_json_error(c.get("/api/patches?colour=red").await, 400).await;
    assert_json_error(c.get("/api/export?format=pdf").await, 400).await;
    // Still nothing recorded on that patch.
    let d = c.get_json(&format!("/api/patches/{id}")).await;
    assert_eq!(d["history"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_filters_and_counts() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let all = c.get_json("/api/patches").await;
    assert_eq!(all["patches"].as_array().unwrap().len(), 3);
    assert_eq!(all["counts"]["total"], 3);
    assert_eq!(all["counts"]["unreviewed"], 3);
    let q = c.get_json("/api/patches?xzqdm=450103").await;
    assert_eq!(q["patches"].as_array().unwrap().len(), 1);
    assert_eq!(q["patches"][0]["patch_id"], "P0003");
    assert_eq!(
        c.get_json("/api/patches?category=%E9%9D%9E%E7%B2%AE%E5%8C%96").await["patches"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.get_json("/api/patches?change_type=building").await["patches"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        c.get_json("/api/patches?min_area=1000").await["patches"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        c.get_json("/api/patches?max_area=500").await["patches"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.get_json("/api/patches?date_from=2026-09-01&date_to=2026-10-31").await["patches"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        c.get_json("/api/patches?date_from=2026-11-01").await["patches"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let id = row_id(&c, "P0002").await;
    let r = c
        .post_json(
            &format!("/api/patches/{id}/verdict"),
            &json!({"status": "other", "subtype": "实地未变化"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let q = c.get_json("/api/patches?status=other").await;
    assert_eq!(q["patches"].as_array().unwrap().len(), 1);
    assert_eq!(q["patches"][0]["subtype"], "实地未变化");
    // Counts cover every status of the filtered set, whatever the status filter.
    assert_eq!(q["counts"]["other"], 1);
    assert_eq!(q["counts"]["unreviewed"], 2);
    let facets = c.get_json("/api/facets").await;
    assert_eq!(facets["xzqdm"], json!(["450102", "450103"]));
    let ov = c.get_json("/api/overview").await;
    assert_eq!(ov["patches"].as_array().unwrap().len(), 3);
    assert_eq!(ov["crs"], "lonlat");
}

#[tokio::test(flavor = "multi_thread")]
async fn verdicts_are_appended_never_overwritten() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let rev = Client::login(&base, "rev").await;
    let boss = Client::login(&base, "boss").await;
    let id = row_id(&rev, "P0001").await;
    let path = format!("/api/patches/{id}/verdict");
    let r = rev
        .post_json(
            &path,
            &json!({"status": "legal", "subtype": "农转用", "note": "批文 2026-12"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // A reviewer cannot replace a decision...
    let msg = assert_json_error(rev.post_json(&path, &json!({"status": "illegal"})).await, 409).await;
    assert!(msg.contains("admin"), "{msg}");
    // ...an admin can change it, and reopen it; each is a new row.
    assert_eq!(
        boss.post_json(&path, &json!({"status": "illegal", "note": "批文不符"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        boss.post_json(&format!("/api/patches/{id}/reopen"), &json!({"note": "复核"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        rev.post_json(&path, &json!({"status": "other", "subtype": "设施农用地"}))
            .await
            .status(),
        200
    );

    let d = rev.get_json(&format!("/api/patches/{id}")).await;
    let h = d["history"].as_array().unwrap();
    let chain: Vec<(String, String, String)> = h
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().into(),
                r["old_status"].as_str().unwrap().into(),
                r["new_status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect = [
        ("rev", "unreviewed", "legal"),
        ("boss", "legal", "illegal"),
        ("boss", "illegal", "unreviewed"),
        ("rev", "unreviewed", "other"),
    ];
    assert_eq!(
        chain,
        expect.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    assert_eq!(h[0]["note"], "批文 2026-12");
    assert_eq!(h[0]["subtype"], "农转用");
    assert!(h.iter().all(|r| r["at"].as_str().unwrap().ends_with('Z')));
    assert_eq!(d["current"]["status"], "other");
    assert_eq!(d["current"]["user"], "rev");

    // The database itself refuses to rewrite history.
    let store = Store::open(&fx.db).unwrap();
    let upd = store
        .conn()
        .execute("UPDATE verdicts SET new_status = 'legal' WHERE patch_id = ?1", [id]);
    assert!(upd.is_err(), "UPDATE on verdicts must fail");
    let del = store.conn().execute("DELETE FROM verdicts WHERE patch_id = ?1", [id]);
    assert!(del.is_err(), "DELETE on verdicts must fail");
    let n: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM verdicts WHERE patch_id = ?1", [id], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn reimport_of_a_rerun_keeps_verdicts_and_history() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let a = row_id(&c, "P0001").await;
    let b = row_id(&c, "P0002").await;
    assert_eq!(
        c.post_json(
            &format!("/api/patches/{a}/verdict"),
            &json!({"status": "illegal", "note": "A"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        c.post_json(
            &format!("/api/patches/{b}/verdict"),
            &json!({"status": "other", "subtype": "实地未变化", "note": "B"})
        )
        .await
        .status(),
        200
    );

    // Import the rerun while the server is running (WAL lets both work).
    let mut store = fx.store();
    let report = import::import_run(&mut store, &fx.run2, Some(&fx.data)).unwrap();
    assert_eq!(
        (
            report.features,
            report.new,
            report.matched_by_track,
            report.matched_by_overlap
        ),
        (3, 1, 1, 1)
    );

    let da = c.get_json(&format!("/api/patches/{a}")).await;
    assert_eq!(da["current"]["status"], "illegal");
    assert_eq!(da["current"]["note"], "A");
    assert_eq!(da["properties"]["area_m2"], 1500.0, "attributes come from the rerun");
    let db = c.get_json(&format!("/api/patches/{b}")).await;
    assert_eq!(db["current"]["status"], "other");
    assert_eq!(db["track_id"], "T-B2", "matched by overlap, now under the new track id");
    assert_eq!(db["history"].as_array().unwrap().len(), 1);
    let q = c.get_json("/api/patches").await;
    assert_eq!(
        q["counts"]["total"], 4,
        "three old patches (one not seen again) + one new"
    );
    assert_eq!(q["counts"]["unreviewed"], 2);

    // Importing the same rerun again changes nothing, and the old track id still matches.
    let again = import::import_run(&mut store, &fx.run2, Some(&fx.data)).unwrap();
    assert_eq!((again.new, again.matched_by_track), (0, 3));
    let again1 = import::import_run(&mut store, &fx.run1, Some(&fx.data)).unwrap();
    assert_eq!(again1.new, 0, "T-B is remembered as an alias of the same patch");
    assert_eq!(c.get_json("/api/patches").await["counts"]["total"], 4);
}

#[test]
fn import_rejects_bad_input_without_changing_the_database() {
    let fx = Fixture::new();
    let mut store = fx.store();
    let outside = tempfile::tempdir().unwrap();
    write_run(outside.path(), &first_run_specs());
    let err = import::import_run(&mut store, outside.path(), Some(&fx.data)).unwrap_err();
    assert!(err.to_string().contains("outside the data folder"), "{err}");
    let bad = fx.data.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for (text, needle) in [
        ("{oops", "not valid JSON"),
        (r#"{"type": "Feature"}"#, "FeatureCollection"),
        (
            r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {"id": "X"}}]}"#,
            "Polygon",
        ),
        (
            r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null, "properties": {}}]}"#,
            "properties.id",
        ),
    ] {
        std::fs::write(bad.join("patches.geojson"), text).unwrap();
        let err = import::import_run(&mut store, &bad, Some(&fx.data)).unwrap_err();
        assert!(err.to_string().contains(needle), "{err} should mention {needle}");
        let code = landwatch_core::Error::from(err).exit_code();
        assert_eq!(code, 2);
    }
    let n: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "failed imports leave no run behind");
    let missing = import::import_run(&mut store, &fx.data.join("nope"), None).unwrap_err();
    assert_eq!(landwatch_core::Error::from(missing).exit_code(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_fills_the_reviewer_fields() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let a = row_id(&c, "P0001").await;
    let b = row_id(&c, "P0002").await;
    c.post_json(
        &format!("/api/patches/{a}/verdict"),
        &json!({"status": "legal", "subtype": "增减挂钩", "note": "=HYPERLINK(\"x\"), 见批文"}),
    )
    .await;
    c.post_json(
        &format!("/api/patches/{b}/verdict"),
        &json!({"status": "illegal", "note": "占用耕地"}),
    )
    .await;

    let out = fx.tmp.path().join("out.geojson");
    let store = fx.store();
    let n = landwatch_review::export::export(&store, landwatch_review::export::ExportFormat::Geojson, &out).unwrap();
    assert_eq!(n, 3);
    let fc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let feats = fc["features"].as_array().unwrap();
    let by_id = |pid: &str| feats.iter().find(|f| f["properties"]["id"] == pid).unwrap()["properties"].clone();
    assert_eq!(by_id("P0001")["PDJG"], "合法");
    assert_eq!(by_id("P0001")["NYQK"], "增减挂钩");
    assert_eq!(by_id("P0001")["reviewer"], "rev");
    assert_eq!(by_id("P0002")["PDJG"], "违法");
    assert_eq!(by_id("P0002")["BZ"], "占用耕地");
    assert_eq!(by_id("P0003")["PDJG"], "");
    assert_eq!(feats[0]["geometry"]["type"], "Polygon");

    let csv_path = fx.tmp.path().join("out.csv");
    landwatch_review::export::export(&store, landwatch_review::export::ExportFormat::Csv, &csv_path).unwrap();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with('\u{feff}'));
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].contains("NYQK,PDJG,BZ,reviewer"));
    assert!(
        lines[1].contains("增减挂钩,合法,\"'=HYPERLINK(\"\"x\"\"), 见批文\",rev"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(",违法,占用耕地,rev,"), "{}", lines[2]);
    // The same through HTTP.
    let r = c.get("/api/export?format=csv").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("verdicts.csv"));
    assert_eq!(r.text().await.unwrap(), csv);
}
