//! Realistic queue entries for the compression benches: the JSON states the ingest writes for
//! the load bench's hit (`load/hit.lua`) and for varied JavaScript-tracker hits (URLs, titles,
//! user agents with their client hints, referrers, languages, events, performance timings),
//! built the way the node builds them (parse, `env.server`, `queue::entries_for`).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use matomo_ingest::env::{ip_string, server_vars};
use matomo_ingest::parse::single_hit;
use matomo_ingest::queue::{entries_for, Envelope, Routed, Routing};
use tier_config::EntryCompression;

/// A deterministic xorshift generator (the corpus must be the same on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const UAS: [(&str, Option<&str>); 8] = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
     Some("%7B%22fullVersionList%22%3A%5B%7B%22brand%22%3A%22Chromium%22%2C%22version%22%3A%22124.0.6367.91%22%7D%2C%7B%22brand%22%3A%22Google%20Chrome%22%2C%22version%22%3A%22124.0.6367.91%22%7D%2C%7B%22brand%22%3A%22Not-A.Brand%22%2C%22version%22%3A%2299.0.0.0%22%7D%5D%2C%22mobile%22%3Afalse%2C%22model%22%3A%22%22%2C%22platform%22%3A%22Windows%22%2C%22platformVersion%22%3A%2215.0.0%22%7D")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1", None),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", None),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", None),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
     Some("%7B%22fullVersionList%22%3A%5B%7B%22brand%22%3A%22Chromium%22%2C%22version%22%3A%22124.0.6367.82%22%7D%2C%7B%22brand%22%3A%22Google%20Chrome%22%2C%22version%22%3A%22124.0.6367.82%22%7D%5D%2C%22mobile%22%3Atrue%2C%22model%22%3A%22SM-A515F%22%2C%22platform%22%3A%22Android%22%2C%22platformVersion%22%3A%2213.0.0%22%7D")),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0", Some("%7B%7D")),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Some("%7B%7D")),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1", None),
];

const HOSTS: [&str; 4] = [
    "example.com",
    "shop.example.org",
    "www.wanderlust-weekly.net",
    "docs.acme.io",
];
const PATHS: [&str; 8] = [
    "/",
    "/pricing",
    "/blog/2024/05/packing-light-for-long-trips",
    "/products/hiking-boots-xt?color=brown&size=44",
    "/search?q=rain%20jacket&page=2",
    "/account/orders/12345",
    "/de/ueber-uns",
    "/stories/packing?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
];
const TITLES: [&str; 6] = [
    "Home",
    "Pricing%20%E2%80%93%20Plans%20for%20teams",
    "Packing%20light%20for%20long%20trips%20%7C%20Wanderlust%20Weekly",
    "Hiking%20Boots%20XT%20-%20Shop",
    "Search%20results",
    "%C3%9Cber%20uns",
];
const REFERRERS: [&str; 6] = [
    "",
    "https%3A%2F%2Fwww.google.com%2F",
    "https%3A%2F%2Fwww.bing.com%2Fsearch%3Fq%3Dhiking%2Bboots",
    "https%3A%2F%2Ft.co%2FaBcDeF123",
    "https%3A%2F%2Fnews.ycombinator.com%2Fitem%3Fid%3D40123456",
    "https%3A%2F%2Fduckduckgo.com%2F",
];
const LANGS: [&str; 5] = [
    "en-US,en;q=0.9",
    "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7",
    "fr-FR,fr;q=0.9",
    "en-GB,en;q=0.9",
    "pt-BR,pt;q=0.9,en;q=0.8",
];
const RES: [&str; 5] = ["1920x1080", "390x844", "1440x900", "2560x1440", "412x915"];

/// The JSON state of one hit, as the ingest writes it (compression `none`).
fn entry(query: &str, headers: &HeaderMap, ip: &str, time: i64, entry_id: String) -> Vec<u8> {
    let params = single_hit(query.as_bytes(), None);
    let addr: IpAddr = ip.parse().expect("ip");
    let envelope = Envelope {
        server: server_vars(&ip_string(addr), "GET", headers, time, false),
        cookie: Default::default(),
        token_auth: None,
        time,
    };
    let routing = Routing {
        num_queues: 16,
        uid_overwrites_visitor_id: true,
        compression: EntryCompression::None,
    };
    let mut id = Some(entry_id);
    let mut entries = entries_for(
        &[Routed {
            params: &params,
            ip,
        }],
        &envelope,
        routing,
        || id.take().unwrap_or_default(),
    );
    entries.remove(0).bytes
}

/// The load bench's hit (`load/hit.lua`, request number `counter`) as `run.sh`'s node queues it.
pub fn load_hit(counter: u64, host: &str) -> Vec<u8> {
    let titles = [
        "Home",
        "Pricing",
        "Blog%20post%20%E2%80%93%20one",
        "Contact",
    ];
    let id = format!(
        "{:016x}",
        counter.wrapping_mul(2_654_435_761) % 0x7fff_ffff_ffff
    );
    let query = format!(
        "idsite=1&rec=1&r={counter}&action_name={}&url=http%3A%2F%2Fexample.com%2Fpage%2F{}\
         &urlref=https%3A%2F%2Fwww.google.com%2F&_id={id}&_idn=0&send_image=1&cookie=1&res=1920x1080&pv_id=abc123&h=12&m=30&s=5\
         &pf_net=41&pf_srv=114&pf_tfr=349&pf_dm1=1673&pf_dm2=92&pf_onl=54",
        titles[(counter % 4) as usize],
        counter % 50
    );
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_str(host).expect("host"));
    h.insert("user-agent", HeaderValue::from_static(UAS[6].0));
    h.insert(
        "accept-language",
        HeaderValue::from_static("en-US,en;q=0.9"),
    );
    entry(
        &query,
        &h,
        "127.0.0.1",
        1_800_000_000 + counter as i64,
        format!(
            "{:016x}",
            counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) % u64::MAX
        ),
    )
}

/// `n` varied JavaScript-tracker hits (page views, some events and site searches).
pub fn varied_hits(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|i| {
            let host = HOSTS[rng.below(HOSTS.len())];
            let path = PATHS[rng.below(PATHS.len())];
            let (ua, uadata) = UAS[rng.below(UAS.len())];
            let referrer = rng.pick(&REFERRERS);
            let url = format!("https%3A%2F%2F{host}{}", path.replace('/', "%2F").replace('?', "%3F").replace('=', "%3D").replace('&', "%26"));
            let visitor = format!("{:016x}", rng.next());
            let pv: String = (0..6).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.below(62)])).collect();
            let mut query = format!(
                "action_name={}&idsite={}&rec=1&r={:06}&h={}&m={}&s={}&url={url}&_id={visitor}&_idn={}&send_image=0&_refts={}&cookie=1&res={}&pv_id={pv}",
                rng.pick(&TITLES), 1 + rng.below(3), rng.below(1_000_000), rng.below(24), rng.below(60), rng.below(60),
                rng.below(2), if referrer.is_empty() { 0 } else { 1_799_990_000 + rng.below(9000) }, rng.pick(&RES),
            );
            if !referrer.is_empty() {
                query.push_str(&format!("&urlref={referrer}"));
            }
            match rng.below(4) {
                0 => query.push_str(&format!("&e_c=Video&e_a=Play&e_n=Intro%20{}&e_v={}&ca=1", rng.below(9), rng.below(120))),
                1 => query.push_str(&format!("&pf_net={}&pf_srv={}&pf_tfr={}&pf_dm1={}&pf_dm2={}&pf_onl={}", rng.below(200), rng.below(400), rng.below(900), rng.below(3000), rng.below(300), rng.below(100))),
                2 => query.push_str("&search=rain%20jacket&search_cat=&search_count=17"),
                _ => query.push_str(&format!("&ping=1&pv_id={pv}")),
            }
            if let Some(data) = uadata {
                query.push_str(&format!("&uadata={data}"));
            }
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_static("analytics.example.com"));
            h.insert("user-agent", HeaderValue::from_static(ua));
            h.insert("accept-language", HeaderValue::from_str(rng.pick(&LANGS)).expect("lang"));
            h.insert("referer", HeaderValue::from_str(&format!("https://{host}{}", path)).expect("referer"));
            if i % 5 == 0 {
                h.insert(HeaderName::from_static("dnt"), HeaderValue::from_static("1"));
            }
            let ip = format!("{}.{}.{}.{}", 1 + rng.below(220), rng.below(256), rng.below(256), 1 + rng.below(254));
            entry(&query, &h, &ip, 1_800_000_000 + i as i64 * 7, format!("{:016x}", rng.next()))
        })
        .collect()
}
