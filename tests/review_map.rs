//! The review server's map: XYZ tiles of a run's before/after images (GDAL warp to Web
//! Mercator, overviews and tiles cached in the server's cache folder) and the patches as
//! GeoJSON for a box. Driven over HTTP against an in-process server.

mod map_support;
mod review_support;

use map_support::*;
use review_support::*;
use serde_json::Value;

/// Zoom at which one tile spans about 2.4 km, the size of the test scene.
const Z: u32 = 14;

fn decode(png: &[u8]) -> image::RgbaImage {
    image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .expect("a PNG")
        .to_rgba8()
}

async fn tile(c: &Client, run: i64, date: &str, (x, y): (u32, u32)) -> reqwest::Response {
    c.get(&format!("/tiles/{run}/{date}/{Z}/{x}/{y}.png")).await
}

async fn error_of(r: reqwest::Response) -> String {
    let v: Value = r.json().await.expect("JSON error body");
    v["error"].as_str().expect("error message").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tiles_of_both_dates_render_from_the_runs_images() {
    let fx = Fixture::new();
    let (before, _) = write_scene(&fx.data, &fx.run1, 1024);
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let at = tile_of(108.3005, 22.8005, Z);

    let b = tile(&c, 1, "before", at).await;
    assert_eq!(b.status(), 200);
    assert_eq!(b.headers()["content-type"], "image/png");
    // Browsers revalidate (so logout ends access) and get a 304 for a tile they hold.
    assert_eq!(b.headers()["cache-control"], "private, no-cache");
    let etag = b.headers()["etag"].to_str().expect("etag").to_string();
    let again = c
        .http
        .get(format!("{base}/tiles/1/before/{Z}/{}/{}.png", at.0, at.1))
        .header("Cookie", &c.cookie)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(again.status(), 304);
    let b = decode(&b.bytes().await.expect("body"));
    let a = decode(&tile(&c, 1, "after", at).await.bytes().await.expect("body"));
    assert_eq!(b.dimensions(), (256, 256));
    let opaque = b.pixels().filter(|p| p[3] == 255).count();
    assert!(
        opaque > 256 * 256 / 4,
        "the image covers much of this tile ({opaque} opaque pixels)"
    );
    let brighter = b
        .pixels()
        .zip(a.pixels())
        .filter(|(pb, pa)| pa[3] == 255 && u32::from(pa[0]) > u32::from(pb[0]) + 60)
        .count();
    assert!(
        brighter > 20,
        "the after tile shows the new building ({brighter} brighter pixels)"
    );

    // Far away from the scene: transparent, not an error.
    let empty = decode(
        &tile(&c, 1, "before", tile_of(10.0, 50.0, Z))
            .await
            .bytes()
            .await
            .expect("body"),
    );
    assert!(empty.pixels().all(|p| p[3] == 0));

    // Overviews and tiles live in the cache folder, nothing is written beside the images.
    let cache = fx.db.with_file_name("review.sqlite.cache");
    let ovr: Vec<_> = std::fs::read_dir(cache.join("overviews"))
        .expect("overview folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".vrt.ovr"))
        .collect();
    assert_eq!(ovr.len(), 2, "one overview file per date");
    let beside: Vec<_> = std::fs::read_dir(before.parent().expect("dir"))
        .expect("ls")
        .flatten()
        .collect();
    assert_eq!(beside.len(), 2, "only the two images in their folder: {beside:?}");
    assert!(cache.join("tiles").read_dir().expect("tile cache").next().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn tiles_need_a_session_and_end_with_logout() {
    let fx = Fixture::new();
    write_scene(&fx.data, &fx.run1, 512);
    let base = fx.start_server().await;
    let at = tile_of(108.3005, 22.8005, Z);
    let anonymous = http()
        .get(format!("{base}/tiles/1/before/{Z}/{}/{}.png", at.0, at.1))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);

    let c = Client::login(&base, "rev").await;
    assert_eq!(tile(&c, 1, "before", at).await.status(), 200);
    let out = c
        .post_raw(
            "/logout",
            Some(&base),
            Some(&c.csrf.clone()),
            "text/plain",
            String::new(),
        )
        .await;
    assert!(
        out.status().is_success() || out.status().is_redirection(),
        "logout: {}",
        out.status()
    );
    assert_eq!(
        tile(&c, 1, "before", at).await.status(),
        401,
        "the cached tile is refused too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tile_requests_get_4xx_with_a_message() {
    let fx = Fixture::new();
    let (before, after) = write_scene(&fx.data, &fx.run1, 512);
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let at = tile_of(108.3005, 22.8005, Z);

    let unknown = tile(&c, 99, "before", at).await;
    assert_eq!(unknown.status(), 404);
    assert!(error_of(unknown).await.contains("no run 99"));
    assert_eq!(tile(&c, 1, "yesterday", at).await.status(), 404);
    let out_of_range = c.get(&format!("/tiles/1/before/{Z}/{}/0.png", 1u32 << Z)).await;
    assert_eq!(out_of_range.status(), 400);
    assert!(error_of(out_of_range).await.contains("out of range"));
    assert_eq!(c.get("/tiles/1/before/30/0/0.png").await.status(), 400);
    assert_eq!(c.get("/tiles/1/before/1/0/0.jpg").await.status(), 404);
    assert_eq!(c.get("/tiles/1/before/%2e%2e/%2e%2e/etc/passwd").await.status(), 404);

    // The manifest names an image outside the data folder: refused, never read.
    let outside = fx.tmp.path().join("outside.tif");
    std::fs::copy(&before, &outside).expect("copy");
    write_manifest(&fx.run1, &outside, &after);
    let r = tile(&c, 1, "before", at).await;
    assert_eq!(r.status(), 404);
    assert!(error_of(r).await.contains("outside the data folder"));

    // The image was damaged (cut short) after import: a 4xx naming it, never a 500.
    write_manifest(&fx.run1, &before, &after);
    let whole = std::fs::read(&after).expect("read");
    std::fs::write(&after, &whole[..whole.len() / 3]).expect("truncate");
    let r = tile(&c, 1, "after", at).await;
    assert!(r.status().is_client_error(), "damaged image: {}", r.status());
    assert!(error_of(r).await.contains("after.tif"));
    std::fs::write(&after, &whole).expect("restore");

    // The image was moved away after import.
    write_manifest(&fx.run1, &before, &after);
    std::fs::rename(&after, fx.tmp.path().join("moved.tif")).expect("move");
    let r = tile(&c, 1, "after", at).await;
    assert_eq!(r.status(), 404);
    assert!(error_of(r).await.contains("no longer on disk"));

    // A run without a manifest.
    std::fs::remove_file(fx.run1.join("run.json")).expect("rm");
    let r = tile(&c, 1, "before", at).await;
    assert_eq!(r.status(), 404);
    assert!(error_of(r).await.contains("run.json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn patches_in_a_box_come_as_geojson_with_their_status() {
    let fx = Fixture::new();
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let id = row_id(&c, "P0002").await;
    let v = c
        .post_json(
            &format!("/api/patches/{id}/verdict"),
            &serde_json::json!({"status": "illegal"}),
        )
        .await;
    assert_eq!(v.status(), 200, "{}", v.text().await.unwrap_or_default());

    let all = c.get_json("/api/map/patches?bbox=108.2,22.7,108.4,22.9").await;
    let features = all["features"].as_array().expect("features");
    assert_eq!(features.len(), 3);
    let p2 = features.iter().find(|f| f["properties"]["id"] == id).expect("P0002");
    assert_eq!(p2["properties"]["status"], "illegal");
    assert_eq!(p2["properties"]["run_id"], 1);
    assert_eq!(p2["geometry"]["type"], "Polygon");

    let one = c
        .get_json("/api/map/patches?bbox=108.2995,22.7995,108.3015,22.8015")
        .await;
    assert_eq!(one["features"].as_array().expect("features").len(), 1);
    assert_eq!(c.get("/api/map/patches?bbox=1,2,3").await.status(), 400);
    let anonymous = http()
        .get(format!("{base}/api/map/patches?bbox=108.2,22.7,108.4,22.9"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn land_use_parcels_come_in_lon_lat_with_their_dlbm() {
    let fx = Fixture::new();
    let (before, after) = write_scene(&fx.data, &fx.run1, 512);
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let none = c.get("/api/map/layers/1/landuse?bbox=108.29,22.79,108.31,22.81").await;
    assert_eq!(none.status(), 404, "a run without a land-use layer");
    assert!(error_of(none).await.contains("without a landuse layer"));

    write_landuse(&fx.data, &fx.run1, &before, &after);
    let fc = c
        .get_json("/api/map/layers/1/landuse?bbox=108.299,22.799,108.301,22.801")
        .await;
    let features = fc["features"].as_array().expect("features");
    assert_eq!(features.len(), 1, "only the parcel in the box: {fc}");
    assert_eq!(features[0]["properties"]["DLBM"], "0101");
    let first = &features[0]["geometry"]["coordinates"][0][0];
    let (lon, lat) = (first[0].as_f64().expect("lon"), first[1].as_f64().expect("lat"));
    assert!(
        (lon - 108.2995).abs() < 1e-6 && (lat - 22.7995).abs() < 1e-6,
        "lon/lat order: {first}"
    );
    let both = c
        .get_json("/api/map/layers/1/landuse?bbox=108.29,22.79,108.31,22.81")
        .await;
    assert_eq!(both["features"].as_array().expect("features").len(), 2);
    assert_eq!(
        c.get("/api/map/layers/1/roads?bbox=108.29,22.79,108.31,22.81")
            .await
            .status(),
        404
    );
    assert_eq!(
        c.get("/api/map/layers/7/landuse?bbox=108.29,22.79,108.31,22.81")
            .await
            .status(),
        404
    );
}

/// True when GDAL's XML parser accepts `xml` (a real parser, not a substring check).
fn xml_parses(xml: &str) -> bool {
    let c = std::ffi::CString::new(xml).expect("no NUL in XML");
    // SAFETY: the string lives through the call; the returned tree is freed at once.
    unsafe {
        let tree = gdal_sys::CPLParseXMLString(c.as_ptr());
        let ok = !tree.is_null();
        if ok {
            gdal_sys::CPLDestroyXMLNode(tree);
        }
        ok
    }
}

async fn new_map_token(c: &Client, label: &str) -> Value {
    let r = c
        .post_json("/api/me/map-tokens", &serde_json::json!({ "label": label }))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("token json")
}

#[tokio::test(flavor = "multi_thread")]
async fn wmts_capabilities_list_the_runs_for_a_session_or_a_token() {
    let fx = Fixture::new();
    write_scene(&fx.data, &fx.run1, 512);
    let base = fx.start_server().await;
    let anonymous = http()
        .get(format!("{base}/wmts/1.0.0/WMTSCapabilities.xml"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);

    let c = Client::login(&base, "rev").await;
    let caps = c.get("/wmts/1.0.0/WMTSCapabilities.xml").await;
    assert_eq!(caps.status(), 200);
    assert!(caps.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("application/xml"));
    let xml = caps.text().await.expect("xml");
    assert!(xml_parses(&xml), "capabilities are well-formed XML:\n{xml}");
    for layer in ["run1-before", "run1-after"] {
        assert!(
            xml.contains(&format!("<ows:Identifier>{layer}</ows:Identifier>")),
            "{layer} listed"
        );
    }
    assert!(xml.contains("urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"));
    assert!(xml.contains(&format!("template=\"{base}/wmts/1.0.0/run1-after/")));

    let t = new_map_token(&c, "QGIS office PC").await;
    let url = t["capabilities_url"].as_str().expect("url").to_string();
    let token = t["token"].as_str().expect("token").to_string();
    let by_token = http().get(&url).send().await.expect("GET");
    assert_eq!(by_token.status(), 200, "a token needs no cookie");
    let xml = by_token.text().await.expect("xml");
    assert!(xml_parses(&xml));
    assert!(xml.contains(&format!("template=\"{base}/wmts/t/{token}/1.0.0/run1-before/")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gis_client_reads_tiles_with_a_token_until_it_is_revoked() {
    let fx = Fixture::new();
    write_scene(&fx.data, &fx.run1, 1024);
    let base = fx.start_server().await;
    let c = Client::login(&base, "rev").await;
    let t = new_map_token(&c, "QGIS").await;
    let (id, token) = (
        t["id"].as_i64().expect("id"),
        t["token"].as_str().expect("token").to_string(),
    );
    let caps_url = t["capabilities_url"].as_str().expect("url").to_string();

    // A WMTS tile with the token, the same picture as the map's tile.
    let (x, y) = tile_of(108.3005, 22.8005, Z);
    let wmts_tile = format!("{base}/wmts/t/{token}/1.0.0/run1-after/GoogleMapsCompatible/{Z}/{y}/{x}.png");
    let r = http().get(&wmts_tile).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    let via_wmts = r.bytes().await.expect("png");
    let via_map = tile(&c, 1, "after", (x, y)).await.bytes().await.expect("png");
    assert_eq!(decode(&via_wmts), decode(&via_map));

    // GDAL's WMTS driver (as QGIS's GDAL-based clients) reads the layer from the capabilities.
    let gdal_url = format!("WMTS:{caps_url},layer=run1-after");
    // GDAL's WMS/WMTS driver caches tiles in ./gdalwmscache by default: keep it in the fixture.
    let wms_cache = fx.tmp.path().join("gdalwmscache");
    let lit = tokio::task::spawn_blocking(move || {
        gdal::config::set_config_option(
            "GDAL_DEFAULT_WMS_CACHE_PATH",
            wms_cache.to_str().expect("utf-8 temp path"),
        )
        .expect("set the WMS cache path");
        let ds = gdal::Dataset::open(&gdal_url).expect("GDAL opens the WMTS layer");
        let (w, h) = ds.raster_size();
        let band = ds.rasterband(1).expect("band");
        let px = band
            .read_as::<u8>((0, 0), (w, h), (64, 64), None)
            .expect("read through WMTS");
        px.data().iter().filter(|v| **v > 0).count()
    })
    .await
    .expect("join");
    assert!(lit > 64 * 64 / 4, "GDAL saw the imagery ({lit} lit pixels)");

    let bad = http()
        .get(wmts_tile.replace(&token, "lwmnottherealtoken"))
        .send()
        .await
        .expect("GET");
    assert_eq!(bad.status(), 401);
    let revoke = c.delete(&format!("/api/me/map-tokens/{id}")).await;
    assert_eq!(revoke.status(), 200);
    let after = http().get(&wmts_tile).send().await.expect("GET");
    assert_eq!(after.status(), 401, "a revoked token is refused");
    assert!(error_of(after).await.contains("revoked"));
    assert_eq!(http().get(&caps_url).send().await.expect("GET").status(), 401);
    let listed = c.get_json("/api/me/map-tokens").await;
    assert!(listed["tokens"][0]["revoked_at"].is_string());
    assert!(!listed.to_string().contains(&token), "the list never shows the token");
}
