//! The request environment a queued hit carries: the client IP and the PHP `$_SERVER`
//! variables (`env.server`) and cookies (`env.cookie`) the tracker reads when it processes it.
//!
//! Client IP: the socket peer, or — only when the peer is one of `[General] proxy_ips` — the
//! first address in the first configured `proxy_client_headers` header that is not itself a
//! trusted proxy (Matomo's `IP::getIpFromHeader`). The resolved IP is written as `REMOTE_ADDR`
//! and the proxy headers are *not* copied, so a PHP worker sees the same IP we routed by.
//!
//! `env.server` is kept small (Redis memory is a target): only the variables Matomo's tracker
//! reads. It is a flat list ([`ServerVars`]) borrowing the request's headers, written as the
//! [`Params`] map of the same variables would be. Pure functions of the request parts.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use matomo_wire::php::string_from_request_bytes;
use matomo_wire::{phpjson, Params, WritePhpArray};
use serde_json::Value;

/// Headers copied into `env.server` (as `HTTP_*`) when present. Header names, not strings, so a
/// lookup does not parse the name on every hit.
static COPIED_HEADERS: [(HeaderName, &str); 10] = [
    (http::header::USER_AGENT, "HTTP_USER_AGENT"),
    (http::header::ACCEPT_LANGUAGE, "HTTP_ACCEPT_LANGUAGE"),
    (http::header::REFERER, "HTTP_REFERER"),
    (http::header::HOST, "HTTP_HOST"),
    (HeaderName::from_static("x-purpose"), "HTTP_X_PURPOSE"),
    (HeaderName::from_static("purpose"), "HTTP_PURPOSE"),
    (HeaderName::from_static("sec-purpose"), "HTTP_SEC_PURPOSE"),
    (HeaderName::from_static("x-moz"), "HTTP_X_MOZ"),
    (http::header::VIA, "HTTP_VIA"),
    (http::header::DNT, "HTTP_DNT"),
];

/// Cookies the tracker reads: the ignore-visits cookie is added from the configuration.
const THIRD_PARTY_COOKIE: &str = "_pk_uid";

/// Errors in the proxy settings (reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum ProxyConfigError {
    /// An entry of `proxy_ips` is neither an IP nor a CIDR range.
    #[error("matomo.tracker.proxy_ips: {0:?} is not an IP address or CIDR range")]
    BadProxyIp(String),
    /// An entry of `proxy_client_headers` is not a `HTTP_*` header name.
    #[error("matomo.tracker.proxy_client_headers: {0:?} is not an HTTP_* header variable")]
    BadHeader(String),
}

/// Trusted proxies and the headers they may set.
#[derive(Debug, Clone, Default)]
pub struct ProxyPolicy {
    trusted: Vec<IpNet>,
    headers: Vec<HeaderName>,
}

impl ProxyPolicy {
    /// From `[General] proxy_ips` and `proxy_client_headers` (`HTTP_X_FORWARDED_FOR` style).
    pub fn new(proxy_ips: &[String], client_headers: &[String]) -> Result<Self, ProxyConfigError> {
        let trusted = proxy_ips
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ProxyConfigError::BadProxyIp(s.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        let headers = client_headers
            .iter()
            .map(|h| {
                let name = h
                    .trim()
                    .strip_prefix("HTTP_")
                    .ok_or_else(|| ProxyConfigError::BadHeader(h.clone()))?;
                HeaderName::try_from(name.replace('_', "-").to_ascii_lowercase())
                    .map_err(|_| ProxyConfigError::BadHeader(h.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { trusted, headers })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client IP for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.headers.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        for name in &self.headers {
            for value in headers.get_all(name) {
                let Ok(text) = value.to_str() else { continue };
                let found = text
                    .split(',')
                    .filter_map(|part| sanitize_ip(part.trim()))
                    .find(|ip| !self.is_trusted(*ip));
                if let Some(ip) = found {
                    return ip;
                }
            }
        }
        peer
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 addresses.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `IPUtils::sanitizeIp`: accepts `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
fn sanitize_ip(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.to_ascii_lowercase().contains("unknown") {
        return None;
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

/// `ip` as text, as `Display` writes it; IPv4 (nearly every hit) without the formatting
/// machinery, which costs more than the rest of the conversion.
pub fn ip_string(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// `env.server`: PHP `$_SERVER` variables in order, names unique, values borrowing the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerVars<'h> {
    vars: Vec<(Cow<'static, str>, ServerValue<'h>)>,
}

/// One `$_SERVER` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerValue<'h> {
    /// A string (headers, `REMOTE_ADDR`, `REQUEST_METHOD`, …).
    Str(Cow<'h, str>),
    /// An integer (`REQUEST_TIME`).
    Int(i64),
}

impl<'h> ServerVars<'h> {
    /// Sets `name` to `value`: a new name goes last, a known one keeps its place (PHP's
    /// `$_SERVER[$name] = $value`).
    pub fn set(&mut self, name: impl Into<Cow<'static, str>>, value: ServerValue<'h>) {
        let name = name.into();
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.vars.push((name, value)),
        }
    }

    /// The same variables as a [`Params`] map.
    pub fn to_params(&self) -> Params {
        self.vars
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    ServerValue::Str(s) => Value::String(s.clone().into_owned()),
                    ServerValue::Int(n) => Value::from(*n),
                };
                (name.clone().into_owned(), value)
            })
            .collect()
    }
}

impl WritePhpArray for ServerVars<'_> {
    fn write_php_array(&self, out: &mut String) {
        let entries = self.vars.iter().map(|(name, value)| (&**name, value));
        phpjson::write_entries(out, entries, |out, value| match value {
            ServerValue::Str(s) => phpjson::write_str(out, s),
            ServerValue::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
        });
    }
}

/// Builds `env.server` for one HTTP request; `client_ip` as [`ip_string`] writes it.
pub fn server_vars<'h>(
    client_ip: &str,
    method: &'h str,
    headers: &'h HeaderMap,
    request_time: i64,
    https: bool,
) -> ServerVars<'h> {
    let mut vars = Vec::with_capacity(8);
    let text = |bytes: &'h [u8]| ServerValue::Str(string_from_request_bytes(bytes));
    vars.push((
        Cow::Borrowed("REMOTE_ADDR"),
        ServerValue::Str(Cow::Owned(client_ip.to_owned())),
    ));
    // One pass over the headers (a lookup per copied name would hash each name): the first
    // value of each copied header, in table order below, and the client hints.
    let mut copied: [Option<&'h HeaderValue>; COPIED_HEADERS.len()] = Default::default();
    let mut hints = Vec::new();
    for (name, value) in headers {
        if let Some(slot) = COPIED_HEADERS.iter().position(|(header, _)| header == name) {
            copied[slot].get_or_insert(value);
        } else if name.as_str().starts_with("sec-ch-ua") {
            hints.push((name, value));
        }
    }
    // The names pushed directly are distinct constants; only `sec-ch-ua*` names can repeat.
    for ((_, var), value) in COPIED_HEADERS.iter().zip(copied) {
        if let Some(v) = value {
            vars.push((Cow::Borrowed(*var), text(v.as_bytes())));
        }
    }
    let mut server = ServerVars { vars };
    for (name, value) in hints {
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        server.set(var, text(value.as_bytes()));
    }
    server.set("REQUEST_METHOD", ServerValue::Str(Cow::Borrowed(method)));
    if https {
        server.set("HTTPS", ServerValue::Str(Cow::Borrowed("on")));
    }
    server.set("REQUEST_TIME", ServerValue::Int(request_time));
    server
}

/// `env.cookie`: only the cookies the tracker reads (`ignore_cookie` and `_pk_uid`).
pub fn tracker_cookies(headers: &HeaderMap, ignore_cookie: &str) -> Params {
    let mut cookies = Params::new();
    for header in headers.get_all(http::header::COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => continue,
            };
            let name = string_from_request_bytes(name);
            if (!ignore_cookie.is_empty() && name == ignore_cookie) || name == THIRD_PARTY_COOKIE {
                let value = crate::parse::phpquery::url_decode(value);
                cookies.insert(name.into_owned(), header_string(&value));
            }
        }
    }
    cookies
}

fn header_string(bytes: &[u8]) -> Value {
    Value::String(string_from_request_bytes(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::try_from(*k).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn proxy_headers_count_only_from_trusted_peers() {
        let policy = ProxyPolicy::new(
            &["10.0.0.0/8".into(), "192.168.1.1".into()],
            &["HTTP_X_FORWARDED_FOR".into()],
        )
        .expect("valid");
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.1.1.1")]);
        assert_eq!(policy.client_ip(ip("10.2.3.4"), &h), ip("203.0.113.9"));
        assert_eq!(policy.client_ip(ip("192.168.1.1"), &h), ip("203.0.113.9"));
        assert_eq!(policy.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // Trusted proxies in the list are skipped; junk is skipped.
        let h = headers(&[("x-forwarded-for", "unknown, 10.9.9.9, [2001:db8::1]:443")]);
        assert_eq!(policy.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::1"));
        // No usable address: the peer.
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(policy.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        assert_eq!(
            policy.client_ip(ip("::ffff:10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ip_strings_are_what_display_writes() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.9",
            "255.255.255.255",
            "192.168.10.1",
        ] {
            assert_eq!(ip_string(ip(text)), text);
        }
        for octet in 0..=255u8 {
            let v4 = IpAddr::from([octet, 0, octet, 9]);
            assert_eq!(ip_string(v4), v4.to_string());
        }
        assert_eq!(ip_string(ip("2001:db8::1")), "2001:db8::1");
    }

    #[test]
    fn bad_proxy_settings_are_reported() {
        assert!(ProxyPolicy::new(&["nope".into()], &[]).is_err());
        assert!(ProxyPolicy::new(&[], &["X_FORWARDED_FOR".into()]).is_err());
    }

    #[test]
    fn server_vars_take_the_first_copied_value_the_last_hint_in_a_fixed_order() {
        let h = headers(&[
            ("sec-ch-ua-model", "\"A\""),
            ("dnt", "1"),
            ("user-agent", "UA/1"),
            ("user-agent", "UA/2"),
            ("sec-ch-ua-model", "\"B\""),
            ("referer", "https://r.example/"),
        ]);
        let mut json = String::new();
        server_vars("1.2.3.4", "GET", &h, 7, false).write_php_array(&mut json);
        assert_eq!(
            json,
            concat!(
                r#"{"REMOTE_ADDR":"1.2.3.4","HTTP_USER_AGENT":"UA\/1","#,
                r#""HTTP_REFERER":"https:\/\/r.example\/","HTTP_DNT":"1","#,
                r#""HTTP_SEC_CH_UA_MODEL":"\"B\"","REQUEST_METHOD":"GET","REQUEST_TIME":7}"#
            )
        );
    }

    #[test]
    fn server_vars_hold_what_the_tracker_reads() {
        let h = headers(&[
            ("user-agent", "UA/1"),
            ("accept-language", "de"),
            ("sec-ch-ua-platform", "\"Linux\""),
            ("x-forwarded-for", "1.1.1.1"),
            ("cookie", "a=b"),
        ]);
        let s = server_vars("1.2.3.4", "GET", &h, 99, false);
        assert_eq!(
            Value::Object(s.to_params()),
            json!({"REMOTE_ADDR":"1.2.3.4","HTTP_USER_AGENT":"UA/1","HTTP_ACCEPT_LANGUAGE":"de",
                   "HTTP_SEC_CH_UA_PLATFORM":"\"Linux\"","REQUEST_METHOD":"GET","REQUEST_TIME":99})
        );
    }

    /// `env.server` as a [`Params`] map, as the node built it before [`ServerVars`]: the
    /// reference the flat list must write the same bytes as.
    fn reference_server_vars(
        client_ip: &str,
        method: &str,
        headers: &HeaderMap,
        request_time: i64,
        https: bool,
    ) -> Params {
        let mut server = Params::new();
        server.insert("REMOTE_ADDR".into(), Value::String(client_ip.to_owned()));
        for (header, var) in &COPIED_HEADERS {
            if let Some(v) = headers.get(header) {
                server.insert((*var).into(), header_string(v.as_bytes()));
            }
        }
        for (name, value) in headers {
            if name.as_str().starts_with("sec-ch-ua") {
                let var = format!(
                    "HTTP_{}",
                    name.as_str().to_ascii_uppercase().replace('-', "_")
                );
                server.insert(var, header_string(value.as_bytes()));
            }
        }
        server.insert("REQUEST_METHOD".into(), Value::String(method.to_owned()));
        if https {
            server.insert("HTTPS".into(), Value::String("on".into()));
        }
        server.insert("REQUEST_TIME".into(), Value::from(request_time));
        server
    }

    #[test]
    fn server_vars_write_what_the_map_wrote() {
        let mut latin1 = HeaderMap::new();
        latin1.insert(
            http::header::USER_AGENT,
            HeaderValue::from_bytes(b"caf\xe9/1 \"x\"").expect("value"),
        );
        latin1.append("sec-ch-ua-x", HeaderValue::from_static("1"));
        latin1.append("sec-ch-ua_x", HeaderValue::from_static("2"));
        latin1.append("sec-ch-ua-x", HeaderValue::from_static("3"));
        latin1.append(
            "sec-ch-ua",
            HeaderValue::from_static("\"Chromium\";v=\"120\""),
        );
        let full = headers(&[
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
            ("accept-language", "en-US,en;q=0.9"),
            ("referer", "https://example.com/a/b?c=d"),
            ("host", "t.example.com"),
            ("x-purpose", "preview"),
            ("purpose", "prefetch"),
            ("sec-purpose", "prefetch"),
            ("x-moz", "prefetch"),
            ("via", "1.1 proxy"),
            ("dnt", "1"),
            ("sec-ch-ua-mobile", "?0"),
        ]);
        for (h, method, https) in [
            (&HeaderMap::new(), "GET", false),
            (&latin1, "POST", true),
            (&full, "GET", true),
        ] {
            for time in [0, -5, 1_800_000_000, i64::MAX] {
                let (mut ours, mut theirs) = (String::new(), String::new());
                server_vars("2001:db8::1", method, h, time, https).write_php_array(&mut ours);
                let reference = reference_server_vars("2001:db8::1", method, h, time, https);
                phpjson::write_map(&mut theirs, &reference);
                assert_eq!(ours, theirs);
            }
        }
    }

    #[test]
    fn only_tracker_cookies_are_kept() {
        let h = headers(&[
            ("cookie", "a=b; matomo_ignore=1; _pk_uid=abc%20d"),
            ("cookie", "x"),
        ]);
        assert_eq!(
            Value::Object(tracker_cookies(&h, "matomo_ignore")),
            json!({"matomo_ignore":"1","_pk_uid":"abc d"})
        );
    }
}
