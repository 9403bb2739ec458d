//! Shared helpers for the review tests: a tiny generated run folder (patches.geojson + PNG
//! chips, no detector needed), a database with users, and an in-process server on
//! 127.0.0.1 with a small HTTP client that handles the session cookie and CSRF token.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use landwatch_review::users::{self, Role};
use landwatch_review::web::{serve_on, AppState, ServeOptions};
use landwatch_review::{import, Store};
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery";
/// Markup placed in a patch attribute to prove the page shows it as text.
pub const SCRIPT_NAME: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";

/// One patch of a generated run: a square of side `size` at (`x`, `y`) in lon/lat.
pub struct PatchSpec {
    pub id: String,
    pub track_id: String,
    pub x: f64,
    pub y: f64,
    pub size: f64,
    pub xzqdm: &'static str,
    pub xzqmc: &'static str,
    pub category: &'static str,
    pub change_type: &'static str,
    pub area_m2: f64,
    pub chip_before: String,
    pub chip_after: String,
    /// Further properties (e.g. `change_confidence`, `suppressed`), added to the fixed ones.
    pub extra: serde_json::Map<String, Value>,
}

impl PatchSpec {
    pub fn new(id: impl Into<String>, track_id: impl Into<String>, x: f64, y: f64) -> PatchSpec {
        let id = id.into();
        PatchSpec {
            chip_before: format!("chips/{id}_before.png"),
            chip_after: format!("chips/{id}_after.png"),
            id,
            track_id: track_id.into(),
            x,
            y,
            size: 0.001,
            xzqdm: "450102",
            xzqmc: "兴宁区",
            category: "非农化",
            change_type: "building",
            area_m2: 1200.0,
            extra: serde_json::Map::new(),
        }
    }
}

fn square(x: f64, y: f64, s: f64) -> Value {
    json!({ "type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]] })
}

/// A 32×32 PNG with a red outline, tinted by `shade` so before and after differ.
pub fn write_png(path: &Path, shade: u8) {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        if x == 4 || x == 27 || y == 4 || y == 27 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([shade, shade / 2 + 60, 90])
        }
    });
    img.save(path).expect("write png");
}

/// Writes `run_dir/patches.geojson` and every chip the specs name (inside `chips/`).
pub fn write_run(run_dir: &Path, specs: &[PatchSpec]) {
    std::fs::create_dir_all(run_dir.join("chips")).expect("mkdir chips");
    let mut features = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        for (rel, shade) in [(&s.chip_before, 40u8), (&s.chip_after, 200u8)] {
            let safe = !rel.contains("..") && !rel.starts_with('/');
            if safe && rel.ends_with(".png") {
                write_png(&run_dir.join(rel), shade.wrapping_add(i as u8 * 10));
            }
        }
        let mut feature = json!({
            "type": "Feature",
            "geometry": square(s.x, s.y, s.size),
            "properties": {
                "id": s.id, "track_id": s.track_id, "change_type": s.change_type,
                "category": s.category, "confidence": 0.9, "area_m2": s.area_m2,
                "area_mu": s.area_m2 / 666.667, "cropland_area_m2": s.area_m2,
                "basic_farmland_area_m2": 0.0, "before_date": "2026-05-01", "after_date": "2026-10-01",
                "model": "test@1", "features": { "ndvi_drop": 0.4 },
                "chip_before": s.chip_before, "chip_after": s.chip_after,
                "JCBH": format!("{}20261001{:04}", s.xzqdm, i + 1), "XZQDM": s.xzqdm, "XZQMC": s.xzqmc,
                "QSX": "20260501", "HSX": "20261001", "TBLX": "新增建筑", "DLBM": "0101", "DLMC": "水田",
                "JCMJ": s.area_m2, "JCMJ_MU": s.area_m2 / 666.667, "GDMJ": s.area_m2, "YJJBNTMJ": 0.0,
                "SFYN": "否", "SFHX": "否", "ZXX": s.x + s.size / 2.0, "ZXY": s.y + s.size / 2.0,
                "NYQK": "", "PDJG": "", "BZ": ""
            }
        });
        if let Some(props) = feature["properties"].as_object_mut() {
            props.extend(s.extra.clone());
        }
        features.push(feature);
    }
    let fc = json!({ "type": "FeatureCollection", "features": features });
    std::fs::write(run_dir.join("patches.geojson"), fc.to_string()).expect("write geojson");
}

/// The first run: three patches, the first with markup in its county name.
pub fn first_run_specs() -> Vec<PatchSpec> {
    let mut a = PatchSpec::new("P0001", "T-A", 108.300, 22.800);
    a.xzqmc = SCRIPT_NAME;
    let b = PatchSpec::new("P0002", "T-B", 108.310, 22.805);
    let mut c = PatchSpec::new("P0003", "T-C", 108.320, 22.810);
    c.xzqdm = "450103";
    c.xzqmc = "青秀区";
    c.category = "非粮化";
    c.change_type = "pond";
    c.area_m2 = 300.0;
    vec![a, b, c]
}

/// A rerun: T-A seen again (same track id, new attributes), T-B re-detected under a new
/// track id with a slightly shifted outline (IoU ≈ 0.8), T-C gone, one new patch.
pub fn rerun_specs() -> Vec<PatchSpec> {
    let mut a = PatchSpec::new("P0001", "T-A", 108.300, 22.800);
    a.xzqmc = SCRIPT_NAME;
    a.area_m2 = 1500.0;
    let b = PatchSpec::new("P0002", "T-B2", 108.3101, 22.805);
    let d = PatchSpec::new("P0004", "T-D", 108.400, 22.900);
    vec![a, b, d]
}

/// `n` patches P00001… (track ids G00001…) on a grid of 50 columns, without chips (so
/// thousands of them are quick to write).
pub fn grid_specs(n: usize) -> Vec<PatchSpec> {
    (0..n)
        .map(|i| {
            let (col, row) = ((i % 50) as f64, (i / 50) as f64);
            let mut s = PatchSpec::new(
                format!("P{:05}", i + 1),
                format!("G{:05}", i + 1),
                108.0 + col * 0.002,
                22.0 + row * 0.002,
            );
            s.chip_before = String::new();
            s.chip_after = String::new();
            s
        })
        .collect()
}

/// A temp folder with `data/run1` (first run), `data/run2` (rerun) and a database with
/// users `rev` (reviewer) and `boss` (admin), the first run imported.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub run1: PathBuf,
    pub run2: PathBuf,
    pub db: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_first_run(&first_run_specs())
    }

    /// Like [`Fixture::new`], with `first` as the first (imported) run.
    pub fn with_first_run(first: &[PatchSpec]) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let run1 = data.join("run1");
        let run2 = data.join("run2");
        write_run(&run1, first);
        write_run(&run2, &rerun_specs());
        let db = tmp.path().join("review.sqlite");
        let mut store = Store::open(&db).expect("open db");
        users::add_user(&store, "rev", Role::Reviewer, PASSWORD).expect("add rev");
        users::add_user(&store, "boss", Role::Admin, PASSWORD).expect("add boss");
        import::import_run(&mut store, &run1, Some(&data)).expect("import run1");
        Fixture {
            tmp,
            data,
            run1,
            run2,
            db,
        }
    }

    pub fn store(&self) -> Store {
        Store::open(&self.db).expect("open db")
    }

    /// Starts the server on an ephemeral 127.0.0.1 port; returns its base URL.
    pub async fn start_server(&self) -> String {
        self.start_server_with(ServeOptions::default()).await
    }

    /// Like [`Fixture::start_server`], with server options.
    pub async fn start_server_with(&self, options: ServeOptions) -> String {
        let state = AppState::new(self.store(), &self.data, options).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = serve_on(state, listener).await;
        });
        format!("http://{addr}")
    }
}

/// Percent-encodes a form value.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A logged-in HTTP client (cookie and CSRF token held by hand; redirects not followed).
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Posts the login form as a same-origin browser would; returns the response.
pub async fn post_login(base: &str, name: &str, password: &str) -> reqwest::Response {
    post_login_as(&http(), base, base, None, name, password)
        .await
        .expect("login request")
}

/// Posts the login form through `client`, claiming `origin` and, if given, `host`.
pub async fn post_login_as(
    client: &reqwest::Client,
    base: &str,
    origin: &str,
    host: Option<&str>,
    name: &str,
    password: &str,
) -> reqwest::Result<reqwest::Response> {
    let mut req = client
        .post(format!("{base}/login"))
        .header("Origin", origin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("name={}&password={}", form_encode(name), form_encode(password)));
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    req.send().await
}

impl Client {
    pub async fn login(base: &str, name: &str) -> Client {
        Client::login_with(base, name, PASSWORD).await
    }

    /// Logs `name` in with `password`; panics unless that works.
    pub async fn login_with(base: &str, name: &str, password: &str) -> Client {
        let resp = post_login(base, name, password).await;
        assert_eq!(resp.status(), 303, "login of {name} should redirect");
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("lw_session="))
            .expect("session cookie")
            .split(';')
            .next()
            .expect("cookie pair")
            .to_string();
        let mut c = Client {
            http: http(),
            base: base.to_string(),
            cookie,
            csrf: String::new(),
        };
        let me = c.get("/api/me").await;
        assert_eq!(me.status(), 200);
        let me: Value = me.json().await.expect("me json");
        c.csrf = me["csrf_token"].as_str().expect("csrf").to_string();
        c
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.base, path))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// A same-origin POST with the right CSRF token and a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_raw(
            path,
            Some(&self.base.clone()),
            Some(&self.csrf.clone()),
            "application/json",
            body.to_string(),
        )
        .await
    }

    /// A same-origin DELETE with the right CSRF token.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{}", self.base, path))
            .header("Cookie", &self.cookie)
            .header("Origin", &self.base)
            .header("X-CSRF-Token", &self.csrf)
            .send()
            .await
            .expect("DELETE")
    }

    /// A POST with full control over Origin, CSRF token, content type and body.
    pub async fn post_raw(
        &self,
        path: &str,
        origin: Option<&str>,
        csrf: Option<&str>,
        content_type: &str,
        body: String,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("Cookie", &self.cookie)
            .header("Content-Type", content_type)
            .body(body);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        if let Some(t) = csrf {
            req = req.header("X-CSRF-Token", t);
        }
        req.send().await.expect("POST")
    }
}

/// The patch id (database row id) whose patch_id is `pid`.
pub async fn row_id(c: &Client, pid: &str) -> i64 {
    let q = c.get_json("/api/patches").await;
    q["patches"]
        .as_array()
        .expect("patches")
        .iter()
        .find(|p| p["patch_id"] == pid)
        .unwrap_or_else(|| panic!("patch {pid} in queue"))["id"]
        .as_i64()
        .expect("id")
}
