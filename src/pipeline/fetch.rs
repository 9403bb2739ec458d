//! Fetching tile images into the archive.
//!
//! Networks at night are flaky and providers serve the odd broken file, so each download is:
//! bounded in concurrency (`fetch.concurrency`), retried with exponential backoff and jitter,
//! resumed with an HTTP `Range` request after a cut (the partial file is kept under a name derived
//! from the URL, so even a crashed process resumes it), checked against the listed SHA-256, checked
//! to be a completely readable raster, and only then renamed into the content-addressed archive.
//! A tile that still fails is reported with its reason; the others go on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;

use super::archive::{sha256_file, sha256_hex, verify_raster, Archive, CatalogueEntry};
use super::config::FetchParams;
use super::source::{Location, TileRef};
use crate::{Error, Result};

/// The HTTP client every source and download uses.
pub fn client(p: &FetchParams) -> Result<reqwest::Client> {
    let t = Duration::from_secs_f64(p.timeout_s);
    reqwest::Client::builder()
        .connect_timeout(t)
        .read_timeout(t)
        .user_agent(concat!("landwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Other(format!("building HTTP client: {e}")))
}

/// Delay before retry number `attempt` (1-based): base·2^(attempt-1) plus up to one base of jitter,
/// so many workers that failed together do not retry in lockstep.
pub fn backoff(p: &FetchParams, attempt: u32) -> Duration {
    let base = p.backoff_ms.max(1);
    let exp = base.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(16));
    let jitter = rand::rng().random_range(0..base);
    Duration::from_millis(exp.min(60_000) + jitter)
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Debug)]
struct AttemptError {
    msg: String,
    retry: bool,
}

impl AttemptError {
    fn retry(msg: impl Into<String>) -> Self {
        AttemptError {
            msg: msg.into(),
            retry: true,
        }
    }
    fn fatal(msg: impl Into<String>) -> Self {
        AttemptError {
            msg: msg.into(),
            retry: false,
        }
    }
}

fn classify(e: reqwest::Error) -> AttemptError {
    AttemptError::retry(describe(&e))
}

/// reqwest's Display hides the cause ("error decoding response body"); include the chain.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn check_status(status: reqwest::StatusCode) -> std::result::Result<(), AttemptError> {
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Err(AttemptError::retry(format!("HTTP {status}")))
    } else {
        Err(AttemptError::fatal(format!("HTTP {status}")))
    }
}

/// GETs (or POSTs `body` to) a small JSON document with the retry policy. Failure is exit 3:
/// without its listing the run cannot start.
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    body: Option<&serde_json::Value>,
    p: &FetchParams,
) -> Result<Vec<u8>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = match body {
            Some(b) => client.post(url).json(b),
            None => client.get(url),
        };
        let result = async {
            let resp = req.send().await.map_err(classify)?;
            check_status(resp.status())?;
            resp.bytes().await.map_err(classify)
        }
        .await;
        match result {
            Ok(b) => return Ok(b.to_vec()),
            Err(e) if e.retry && attempt <= p.retries => {
                tracing::warn!(url, attempt, error = %e.msg, "retrying");
                tokio::time::sleep(backoff(p, attempt)).await;
            }
            Err(e) => return Err(Error::Other(format!("{url}: {} (after {attempt} tries)", e.msg))),
        }
    }
}

/// Outcome of fetching one tile image.
pub type Fetched = (TileRef, std::result::Result<CatalogueEntry, String>);

/// Fetches tiles into the archive, at most `concurrency` at a time. Results come back in the
/// order of `tiles`.
pub async fn fetch_all(
    client: &reqwest::Client,
    archive: &Archive,
    tiles: Vec<TileRef>,
    p: &FetchParams,
    progress: &indicatif::ProgressBar,
) -> Vec<Fetched> {
    let sem = Arc::new(tokio::sync::Semaphore::new(p.concurrency.max(1)));
    let jobs = tiles.into_iter().enumerate().map(|(i, t)| {
        let (client, archive, p, sem) = (client.clone(), archive.clone(), p.clone(), sem.clone());
        let progress = progress.clone();
        async move {
            let _permit = sem.acquire().await;
            let r = fetch_one(&client, &archive, &t, &p).await;
            match &r {
                Ok(e) => tracing::info!(tile = %t.key(), sha256 = %e.sha256, "tile archived"),
                Err(why) => tracing::error!(tile = %t.key(), error = %why, "tile failed"),
            }
            progress.inc(1);
            (i, (t, r))
        }
    });
    let mut done: Vec<(usize, Fetched)> = futures_util::stream::iter(jobs)
        .buffer_unordered(p.concurrency.max(1))
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, f)| f).collect()
}

/// Fetches one tile image unless the archive already has it.
pub async fn fetch_one(
    client: &reqwest::Client,
    archive: &Archive,
    t: &TileRef,
    p: &FetchParams,
) -> std::result::Result<CatalogueEntry, String> {
    if let Some(e) = archive.lookup(&t.tile, &t.date) {
        if t.sha256.as_ref().is_none_or(|s| *s == e.sha256) {
            return Ok(e);
        }
    }
    let part = match &t.location {
        Location::Url(url) => download(client, archive, url, t.sha256.as_deref(), p).await?,
        Location::File(path) => copy_local(archive, path)?,
    };
    admit(archive, t, &part).await
}

/// Verifies a complete temporary file and moves it into the archive with a catalogue record.
async fn admit(archive: &Archive, t: &TileRef, part: &Path) -> std::result::Result<CatalogueEntry, String> {
    let reject = |msg: String| {
        let _ = std::fs::remove_file(part);
        msg
    };
    let sha = sha256_file(part).map_err(|e| reject(e.to_string()))?;
    if let Some(want) = &t.sha256 {
        if *want != sha {
            return Err(reject(format!("checksum mismatch: expected {want}, got {sha}")));
        }
    }
    let owned = part.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || verify_raster(&owned))
        .await
        .map_err(|e| format!("raster check crashed: {e}"))?;
    let raster_footprint = checked.map_err(|e| reject(format!("not a usable raster: {e}")))?;
    let bytes = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    archive.store(part, &sha).map_err(|e| e.to_string())?;
    let entry = CatalogueEntry {
        tile: t.tile.clone(),
        date: t.date.clone(),
        sha256: sha,
        bytes,
        source: t.location.describe(),
        footprint: t.footprint.clone().or(raster_footprint),
    };
    archive.record(&entry).map_err(|e| e.to_string())?;
    Ok(entry)
}

/// Copies a local file into the archive's temporary folder.
fn copy_local(archive: &Archive, path: &Path) -> std::result::Result<PathBuf, String> {
    let tmp = archive.tmp_dir().join(format!(
        "{}.part",
        &sha256_hex(path.display().to_string().as_bytes())[..16]
    ));
    std::fs::copy(path, &tmp).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(tmp)
}

/// Downloads `url` to a partial file, retrying and resuming; returns the complete file.
async fn download(
    client: &reqwest::Client,
    archive: &Archive,
    url: &str,
    want_sha: Option<&str>,
    p: &FetchParams,
) -> std::result::Result<PathBuf, String> {
    let part = archive
        .tmp_dir()
        .join(format!("{}.part", &sha256_hex(url.as_bytes())[..16]));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = match attempt_download(client, url, &part).await {
            Ok(()) => verify_checksum(&part, want_sha),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return Ok(part),
            Err(e) if e.retry && attempt <= p.retries => {
                tracing::warn!(url, attempt, error = %e.msg, "download failed, retrying");
                tokio::time::sleep(backoff(p, attempt)).await;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(format!("{} (after {attempt} tries)", e.msg));
            }
        }
    }
}

/// A wrong checksum may be a corrupted transfer: drop the file and let the retry start over.
fn verify_checksum(part: &Path, want: Option<&str>) -> std::result::Result<(), AttemptError> {
    let Some(want) = want else { return Ok(()) };
    let got = sha256_file(part).map_err(|e| AttemptError::fatal(e.to_string()))?;
    if got == want {
        Ok(())
    } else {
        let _ = std::fs::remove_file(part);
        Err(AttemptError::retry(format!(
            "checksum mismatch: expected {want}, got {got}"
        )))
    }
}

/// One GET, resuming from the partial file's length with `Range` when there is one.
async fn attempt_download(client: &reqwest::Client, url: &str, part: &Path) -> std::result::Result<(), AttemptError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(classify)?;
    let status = resp.status();
    if status.as_u16() == 416 {
        // Our partial file is not a prefix of what the server has now: start over.
        let _ = std::fs::remove_file(part);
        return Err(AttemptError::retry("HTTP 416, restarting the download"));
    }
    check_status(status)?;
    let resumed = status.as_u16() == 206 && have > 0;
    if resumed {
        tracing::info!(url, from = have, "resuming download");
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .map_err(|e| AttemptError::fatal(format!("{}: {e}", part.display())))?;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(classify)?;
        file.write_all(&chunk)
            .map_err(|e| AttemptError::fatal(format!("{}: {e}", part.display())))?;
    }
    file.sync_all()
        .map_err(|e| AttemptError::fatal(format!("{}: {e}", part.display())))?;
    Ok(())
}
