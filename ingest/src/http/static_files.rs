//! Static files from `ingest.static_dir`: `matomo.js`, `piwik.js` and everything under `js/`
//! (Tag Manager containers), with a strong validator (ETag), `Last-Modified`, 304s and a long
//! `Cache-Control`. Compression (gzip, brotli) is added by tower-http's layer on these routes.
//!
//! Files are read once and kept in memory until their modification time or size changes (one
//! `stat` per request). Only plain names are served: no `..`, no hidden files, no other folders.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use sha2::{Digest as _, Sha256};

/// `Cache-Control` of served files: a week, revalidated with the ETag afterwards.
pub const CACHE_CONTROL: &str = "public, max-age=604800";

#[derive(Debug)]
struct Cached {
    modified: SystemTime,
    len: u64,
    body: Bytes,
    etag: HeaderValue,
    last_modified: HeaderValue,
}

/// The static file server.
#[derive(Debug)]
pub struct StaticFiles {
    root: PathBuf,
    cache: RwLock<HashMap<String, Arc<Cached>>>,
}

/// How a static request ended (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// 200 with the file.
    Full,
    /// 304.
    NotModified,
    /// 404.
    Missing,
}

impl StaticFiles {
    /// Serves files below `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Answers a request for `rel` (a path relative to the root, already stripped of the prefix).
    pub async fn serve(&self, rel: &str, headers: &HeaderMap) -> (Served, Response) {
        let Some(file) = self.load(rel).await else {
            let mut r = Response::new(Body::from("not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return (Served::Missing, r);
        };
        let not_modified = match headers.get(header::IF_NONE_MATCH) {
            Some(inm) => inm.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == "*" || t.trim() == file.etag)
            }),
            None => headers.get(header::IF_MODIFIED_SINCE) == Some(&file.last_modified),
        };
        let (served, mut response) = if not_modified {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            (Served::NotModified, r)
        } else {
            let mut r = Response::new(Body::from(file.body.clone()));
            let mime = if rel.ends_with(".js") {
                "application/javascript; charset=utf-8"
            } else {
                mime_of(rel)
            };
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            (Served::Full, r)
        };
        let h = response.headers_mut();
        h.insert(header::ETAG, file.etag.clone());
        h.insert(header::LAST_MODIFIED, file.last_modified.clone());
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        (served, response)
    }

    async fn load(&self, rel: &str) -> Option<Arc<Cached>> {
        if !is_safe(rel) {
            return None;
        }
        let path = self.root.join(rel);
        let meta = tokio::fs::metadata(&path)
            .await
            .ok()
            .filter(|m| m.is_file())?;
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        if let Some(hit) = self.cache.read().ok()?.get(rel) {
            if hit.modified == modified && hit.len == meta.len() {
                return Some(hit.clone());
            }
        }
        let body = Bytes::from(tokio::fs::read(&path).await.ok()?);
        let digest = Sha256::digest(&body);
        let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12]))).ok()?;
        let secs = modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last_modified = HeaderValue::from_str(&http_date(secs)).ok()?;
        let cached = Arc::new(Cached {
            modified,
            len: meta.len(),
            body,
            etag,
            last_modified,
        });
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(rel.to_owned(), cached.clone());
        }
        Some(cached)
    }
}

/// Whether `rel` names `matomo.js`, `piwik.js` or a plain file path under `js/`.
fn is_safe(rel: &str) -> bool {
    let plain = |seg: &str| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    match rel.split_once('/') {
        None => rel == "matomo.js" || rel == "piwik.js",
        Some(("js", rest)) => rest.split('/').all(plain),
        Some(_) => false,
    }
}

fn mime_of(rel: &str) -> &'static str {
    match rel.rsplit('.').next() {
        Some("json") => "application/json",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for Unix seconds.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = matomo_wire::civil::civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
    }

    #[test]
    fn only_plain_names_are_served() {
        assert!(is_safe("matomo.js") && is_safe("piwik.js") && is_safe("js/container_ab12.js"));
        assert!(is_safe("js/sub/x.js"));
        for bad in [
            "js/../x",
            "js/.env",
            "config/config.ini.php",
            "other.js",
            "js/",
            "js//a",
            "js/a b",
        ] {
            assert!(!is_safe(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn etag_and_last_modified_give_304() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("matomo.js"), "var a = 1;").expect("write");
        let files = StaticFiles::new(dir.path().to_path_buf());
        let (served, full) = files.serve("matomo.js", &HeaderMap::new()).await;
        assert_eq!(served, Served::Full);
        let etag = full.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(files.serve("matomo.js", &h).await.0, Served::NotModified);
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MODIFIED_SINCE,
            full.headers()[header::LAST_MODIFIED].clone(),
        );
        assert_eq!(files.serve("matomo.js", &h).await.0, Served::NotModified);
        assert_eq!(
            files.serve("nope.js", &HeaderMap::new()).await.0,
            Served::Missing
        );
    }
}
