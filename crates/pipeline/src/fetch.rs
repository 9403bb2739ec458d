//! Fetching tile images into the archive.
//!
//! Networks at night are flaky and providers serve the odd broken file, so each download is:
//! bounded in concurrency (`fetch.concurrency`), retried with exponential backoff and jitter,
//! resumed with an HTTP `Range` request after a cut (a partial file a crashed process left is
//! claimed and resumed, see [`super::partial`]), checked against the listed SHA-256, checked to be
//! a completely readable raster, and only then renamed into the content-addressed archive.
//! A tile that still fails is reported with its reason; the others go on. The archive itself
//! failing to take a file (disk full, read-only, I/O error) is no tile's fault: it stops the run.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;

use super::archive::{verify_raster, Archive, CatalogueEntry};
use super::config::{limits, FetchParams};
use super::partial::Partial;
use super::source::{Location, TileRef};
use landwatch_core::io::hash::{sha256_file, sha256_hex};
use landwatch_core::{Error, Result};

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
/// so many workers that failed together do not retry in lockstep. Both parts are capped at
/// [`limits::BACKOFF_MS`].
pub fn backoff(p: &FetchParams, attempt: u32) -> Duration {
    let base = p.backoff_ms.clamp(1, limits::BACKOFF_MS);
    let exp = base.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(16));
    let jitter = rand::rng().random_range(0..base);
    Duration::from_millis(exp.min(limits::BACKOFF_MS) + jitter)
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Debug)]
enum AttemptError {
    /// A network or server hiccup: try again after a backoff.
    Retry(String),
    /// Trying again cannot help (e.g. HTTP 404).
    Fatal(String),
    /// Writing into the archive failed: stop the run.
    Disk(Error),
}

fn classify(e: reqwest::Error) -> AttemptError {
    AttemptError::Retry(describe(&e))
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
        Err(AttemptError::Retry(format!("HTTP {status}")))
    } else {
        Err(AttemptError::Fatal(format!("HTTP {status}")))
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
            Err(AttemptError::Retry(msg)) if attempt <= p.retries => {
                tracing::warn!(url, attempt, error = %msg, "retrying");
                tokio::time::sleep(backoff(p, attempt)).await;
            }
            Err(AttemptError::Retry(msg) | AttemptError::Fatal(msg)) => {
                return Err(Error::Other(format!("{url}: {msg} (after {attempt} tries)")))
            }
            Err(AttemptError::Disk(e)) => return Err(e),
        }
    }
}

/// Why a tile image could not be fetched.
#[derive(Debug)]
pub enum FetchError {
    /// This tile: unreachable, wrong checksum, not a raster … It is reported; the run goes on.
    Tile(String),
    /// The archive could not take it (disk full, read-only, I/O error). The next tile would fare
    /// no better, so the run stops (exit 3) and publishes nothing.
    Disk(Error),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Tile(why) => f.write_str(why),
            FetchError::Disk(e) => write!(f, "{e}"),
        }
    }
}

/// Outcome of fetching one tile image.
pub type Fetched = (TileRef, std::result::Result<CatalogueEntry, FetchError>);

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
) -> std::result::Result<CatalogueEntry, FetchError> {
    if let Some(e) = archive.lookup(&t.tile, &t.date) {
        if t.sha256.as_ref().is_none_or(|s| *s == e.sha256) {
            return Ok(e);
        }
    }
    let part = match &t.location {
        Location::Url(url) => download(client, archive, url, t.sha256.as_deref(), p).await?,
        Location::File(path) => copy_local(archive, path)?,
    };
    admit(archive, t, part).await
}

/// Verifies a complete temporary file and moves it into the archive with a catalogue record.
async fn admit(archive: &Archive, t: &TileRef, mut part: Partial) -> std::result::Result<CatalogueEntry, FetchError> {
    let sha = sha256_file(part.path()).map_err(FetchError::Disk)?;
    if let Some(want) = &t.sha256 {
        if *want != sha {
            return Err(FetchError::Tile(format!(
                "checksum mismatch: expected {want}, got {sha}"
            )));
        }
    }
    let owned = part.path().to_path_buf();
    let checked = tokio::task::spawn_blocking(move || verify_raster(&owned))
        .await
        .map_err(|e| FetchError::Tile(format!("raster check crashed: {e}")))?;
    let raster_footprint = checked.map_err(|e| FetchError::Tile(format!("not a usable raster: {e}")))?;
    let bytes = part
        .len()
        .map_err(|e| FetchError::Disk(Error::io(part.path(), "reading a temporary file's size", e)))?;
    archive.store(part.path(), &sha).map_err(FetchError::Disk)?;
    part.mark_stored();
    let entry = CatalogueEntry {
        tile: t.tile.clone(),
        date: t.date.clone(),
        sha256: sha,
        bytes,
        source: t.location.describe(),
        footprint: t.footprint.clone().or(raster_footprint),
    };
    archive.record(&entry).map_err(FetchError::Disk)?;
    Ok(entry)
}

/// The name stem of temporary files for one origin (URL or path).
fn partial_key(origin: &str) -> String {
    sha256_hex(origin.as_bytes())[..16].to_string()
}

/// A temporary file of this task for `origin`: a crashed process's partial one if there is one
/// (see [`super::partial`]), else a new one.
fn partial_for(archive: &Archive, origin: &str) -> std::result::Result<Partial, FetchError> {
    let dir = archive.tmp_dir();
    Partial::claim_or_create(&dir, &partial_key(origin))
        .map_err(|e| FetchError::Disk(Error::io(&dir, "creating a temporary file in the archive", e)))
}

/// Copies a local file into a temporary file of the archive. Reading the source failing is the
/// tile's problem; writing the copy failing is the archive's.
fn copy_local(archive: &Archive, path: &Path) -> std::result::Result<Partial, FetchError> {
    let part = partial_for(archive, &path.display().to_string())?;
    let write_err = |e| FetchError::Disk(Error::io(part.path(), "copying a tile into the archive", e));
    part.truncate().map_err(write_err)?;
    let mut src = std::fs::File::open(path).map_err(|e| FetchError::Tile(format!("{}: {e}", path.display())))?;
    let mut out = part.file();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| FetchError::Tile(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(write_err)?;
    }
    part.file().sync_all().map_err(write_err)?;
    Ok(part)
}

/// Downloads `url` to a temporary file, retrying and resuming; returns the complete file.
async fn download(
    client: &reqwest::Client,
    archive: &Archive,
    url: &str,
    want_sha: Option<&str>,
    p: &FetchParams,
) -> std::result::Result<Partial, FetchError> {
    let part = partial_for(archive, url)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = match attempt_download(client, url, &part).await {
            Ok(()) => verify_checksum(&part, want_sha),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return Ok(part),
            Err(AttemptError::Disk(e)) => return Err(FetchError::Disk(e)),
            Err(AttemptError::Retry(msg)) if attempt <= p.retries => {
                tracing::warn!(url, attempt, error = %msg, "download failed, retrying");
                tokio::time::sleep(backoff(p, attempt)).await;
            }
            Err(AttemptError::Retry(msg) | AttemptError::Fatal(msg)) => {
                return Err(FetchError::Tile(format!("{msg} (after {attempt} tries)")))
            }
        }
    }
}

/// A wrong checksum may be a corrupted transfer: empty the file and let the retry start over.
fn verify_checksum(part: &Partial, want: Option<&str>) -> std::result::Result<(), AttemptError> {
    let Some(want) = want else { return Ok(()) };
    let got = sha256_file(part.path()).map_err(AttemptError::Disk)?;
    if got == want {
        Ok(())
    } else {
        part.truncate()
            .map_err(|e| AttemptError::Disk(Error::io(part.path(), "emptying a temporary file", e)))?;
        Err(AttemptError::Retry(format!(
            "checksum mismatch: expected {want}, got {got}"
        )))
    }
}

/// One GET, resuming from the partial file's length with `Range` when there is one.
async fn attempt_download(
    client: &reqwest::Client,
    url: &str,
    part: &Partial,
) -> std::result::Result<(), AttemptError> {
    let write_err = |e| AttemptError::Disk(Error::io(part.path(), "writing a download into the archive", e));
    let have = part.len().map_err(write_err)?;
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(classify)?;
    let status = resp.status();
    if status.as_u16() == 416 {
        // Our partial file is not a prefix of what the server has now: start over.
        part.truncate().map_err(write_err)?;
        return Err(AttemptError::Retry("HTTP 416, restarting the download".into()));
    }
    check_status(status)?;
    let resumed = status.as_u16() == 206 && have > 0;
    let mut file = part.file();
    if resumed {
        tracing::info!(url, from = have, "resuming download");
        file.seek(SeekFrom::End(0)).map_err(write_err)?;
    } else {
        part.truncate().map_err(write_err)?;
        file.seek(SeekFrom::Start(0)).map_err(write_err)?;
    }
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(classify)?;
        file.write_all(&chunk).map_err(write_err)?;
    }
    file.sync_all().map_err(write_err)?;
    Ok(())
}
