//! The pools realistic hits are drawn from: user agents (with the client hints Chromium sends),
//! browser languages, screen sizes, referrers of every kind, page paths and titles, search
//! keywords, events, content blocks and products.
//!
//! Only data lives here; drawing from it is `model.rs`'s job. No bots and no spam referrers are
//! listed: Matomo would exclude them and the run's hits would not reconcile.

/// One browser profile: the user agent and, for Chromium browsers, the `uadata` client hints.
pub struct Agent {
    /// The `User-Agent` header.
    pub ua: &'static str,
    /// JSON client hints as the JavaScript tracker sends them in `uadata`, if the browser has them.
    pub uadata: Option<&'static str>,
    /// `res` the device typically reports.
    pub resolutions: &'static [&'static str],
    /// Relative weight in the mix.
    pub weight: u32,
}

const DESKTOP: &[&str] = &[
    "1920x1080",
    "2560x1440",
    "1366x768",
    "1536x864",
    "1440x900",
    "3840x2160",
];
const PHONE: &[&str] = &[
    "390x844", "412x915", "360x800", "393x873", "414x896", "375x667",
];
const TABLET: &[&str] = &["810x1080", "820x1180", "768x1024", "800x1280"];

/// Browser profiles weighted roughly like real web traffic (Chrome-heavy, a third mobile).
pub const AGENTS: &[Agent] = &[
    Agent { ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", uadata: Some(r#"{"fullVersionList":[{"brand":"Google Chrome","version":"131.0.6778.86"},{"brand":"Chromium","version":"131.0.6778.86"},{"brand":"Not_A Brand","version":"24.0.0.0"}],"mobile":false,"model":"","platform":"Windows","platformVersion":"15.0.0"}"#), resolutions: DESKTOP, weight: 22 },
    Agent { ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0", uadata: Some(r#"{"fullVersionList":[{"brand":"Microsoft Edge","version":"130.0.2849.80"},{"brand":"Chromium","version":"130.0.6723.117"},{"brand":"Not?A_Brand","version":"99.0.0.0"}],"mobile":false,"model":"","platform":"Windows","platformVersion":"10.0.0"}"#), resolutions: DESKTOP, weight: 6 },
    Agent { ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", uadata: None, resolutions: DESKTOP, weight: 6 },
    Agent { ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", uadata: None, resolutions: &["1440x900", "1512x982", "1728x1117", "2560x1440"], weight: 7 },
    Agent { ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", uadata: Some(r#"{"fullVersionList":[{"brand":"Google Chrome","version":"131.0.6778.70"},{"brand":"Chromium","version":"131.0.6778.70"},{"brand":"Not_A Brand","version":"24.0.0.0"}],"mobile":false,"model":"","platform":"macOS","platformVersion":"14.6.1"}"#), resolutions: &["1440x900", "1512x982", "1728x1117"], weight: 5 },
    Agent { ua: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", uadata: Some(r#"{"fullVersionList":[{"brand":"Google Chrome","version":"131.0.6778.85"},{"brand":"Chromium","version":"131.0.6778.85"}],"mobile":false,"model":"","platform":"Linux","platformVersion":"6.8.0"}"#), resolutions: DESKTOP, weight: 2 },
    Agent { ua: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", uadata: None, resolutions: DESKTOP, weight: 1 },
    Agent { ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/116.0.0.0", uadata: None, resolutions: DESKTOP, weight: 1 },
    Agent { ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1", uadata: None, resolutions: PHONE, weight: 14 },
    Agent { ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", uadata: None, resolutions: PHONE, weight: 3 },
    Agent { ua: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", uadata: Some(r#"{"fullVersionList":[{"brand":"Google Chrome","version":"131.0.6778.81"},{"brand":"Chromium","version":"131.0.6778.81"}],"mobile":true,"model":"SM-S918B","platform":"Android","platformVersion":"14.0.0"}"#), resolutions: PHONE, weight: 12 },
    Agent { ua: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.107 Mobile Safari/537.36", uadata: None, resolutions: PHONE, weight: 3 },
    Agent { ua: "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", uadata: None, resolutions: PHONE, weight: 3 },
    Agent { ua: "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0", uadata: None, resolutions: PHONE, weight: 1 },
    Agent { ua: "Mozilla/5.0 (Linux; U; Android 12; zh-cn; M2102J20SG Build/SKQ1.211006.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.127 Mobile Safari/537.36 XiaoMi/MiuiBrowser/17.8.90430", uadata: None, resolutions: PHONE, weight: 1 },
    Agent { ua: "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", uadata: None, resolutions: TABLET, weight: 3 },
    Agent { ua: "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", uadata: None, resolutions: TABLET, weight: 1 },
    Agent { ua: "Mozilla/5.0 (Linux; Android 9; SHIELD Android TV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 Safari/537.36", uadata: None, resolutions: &["1920x1080"], weight: 1 },
    Agent { ua: "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36", uadata: None, resolutions: &["1920x1080", "3840x2160"], weight: 1 },
    Agent { ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/488.0.0.44.112;FBBV/660000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/18.0;FBSS/3;FBLC/en_US]", uadata: None, resolutions: PHONE, weight: 1 },
];

/// `Accept-Language` values with weights.
pub const LANGUAGES: &[(&str, u32)] = &[
    ("en-US,en;q=0.9", 30),
    ("en-GB,en;q=0.9", 8),
    ("de-DE,de;q=0.9,en;q=0.8", 10),
    ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", 8),
    ("es-ES,es;q=0.9", 6),
    ("es-419,es;q=0.9", 3),
    ("pt-BR,pt;q=0.9,en;q=0.8", 5),
    ("it-IT,it;q=0.9", 4),
    ("nl-NL,nl;q=0.9,en;q=0.8", 3),
    ("pl-PL,pl;q=0.9", 3),
    ("ja-JP,ja;q=0.9", 4),
    ("zh-CN,zh;q=0.9", 4),
    ("ko-KR,ko;q=0.9,en-US;q=0.8", 2),
    ("ru-RU,ru;q=0.9,en;q=0.8", 2),
    ("tr-TR,tr;q=0.9", 2),
    ("sv-SE,sv;q=0.9,en;q=0.8", 1),
    ("hi-IN,hi;q=0.9,en;q=0.8", 2),
    ("ar-SA,ar;q=0.9", 1),
];

/// Pages of the generated site: path and title.
pub const PAGES: &[(&str, &str)] = &[
    ("/", "Home"),
    ("/blog/", "Blog"),
    (
        "/blog/2026/11/faster-tracking",
        "Faster tracking with queues – Blog",
    ),
    (
        "/blog/2026/10/privacy-first-analytics",
        "Privacy-first analytics – Blog",
    ),
    (
        "/blog/2026/09/release-notes-5-2",
        "Release notes 5.2 – Blog",
    ),
    ("/docs/", "Documentation"),
    ("/docs/getting-started", "Getting started | Docs"),
    ("/docs/api/tracking", "Tracking HTTP API | Docs"),
    (
        "/docs/faq/why-is-my-data-missing",
        "FAQ: why is my data missing? | Docs",
    ),
    ("/pricing", "Pricing"),
    ("/features/heatmaps", "Heatmaps & session recordings"),
    ("/features/ecommerce", "Ecommerce analytics"),
    ("/about/team", "Our team"),
    ("/contact", "Contact us"),
    ("/shop/", "Shop"),
    ("/shop/category/t-shirts", "T-shirts – Shop"),
    ("/shop/product/elephant-mug", "Elephant mug – Shop"),
    ("/shop/product/sticker-pack", "Sticker pack – Shop"),
    ("/shop/cart", "Your cart – Shop"),
    ("/shop/checkout", "Checkout – Shop"),
    ("/shop/thank-you", "Thank you for your order – Shop"),
    (
        "/jobs/senior-rust-engineer",
        "Senior Rust engineer (m/f/d) – Jobs",
    ),
    ("/de/blog/datenschutz", "Datenschutz & Analyse – Blog"),
    ("/fr/docs/premiers-pas", "Premiers pas | Documentation"),
    ("/ja/", "ホーム"),
];

/// Search engine result pages a visit can come from (the keyword is appended to the query).
pub const SEARCH_ENGINES: &[&str] = &[
    "https://www.google.com/search?q=",
    "https://www.google.de/search?q=",
    "https://www.bing.com/search?q=",
    "https://duckduckgo.com/?q=",
    "https://search.yahoo.com/search?p=",
    "https://yandex.ru/search/?text=",
    "https://www.ecosia.org/search?q=",
];

/// Social networks a visit can come from.
pub const SOCIALS: &[&str] = &[
    "https://www.facebook.com/",
    "https://t.co/Ab3xYz9Q",
    "https://www.linkedin.com/feed/",
    "https://www.reddit.com/r/selfhosted/comments/1abcde/matomo_at_scale/",
    "https://news.ycombinator.com/item?id=42000000",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "https://mastodon.social/@matomo",
    "https://www.instagram.com/",
];

/// Other websites linking to the site.
pub const WEBSITES: &[&str] = &[
    "https://news.example.net/2026/11/analytics-roundup",
    "https://blog.example.org/how-we-measure",
    "https://forum.example.com/t/self-hosted-analytics/1234",
    "https://wiki.example.edu/Web_analytics",
];

/// Campaign query strings appended to the landing page URL.
pub const CAMPAIGNS: &[&str] = &[
    "mtm_campaign=black-friday&mtm_source=newsletter&mtm_medium=email",
    "utm_campaign=spring_sale&utm_source=google&utm_medium=cpc&utm_term=analytics+tool",
    "pk_campaign=retargeting&pk_kwd=banner-300x250",
    "mtm_campaign=webinar-2026&mtm_source=linkedin&mtm_medium=social&mtm_content=video",
    "utm_source=partner-site&utm_medium=referral&utm_campaign=affiliate-q4",
];

/// Search keywords, used for search engine referrers and site search.
pub const KEYWORDS: &[&str] = &[
    "web analytics",
    "matomo tracking api",
    "google analytics alternative",
    "gdpr analytics",
    "heatmap tool",
    "elephant mug",
    "self hosted analytics",
    "queue worker redis",
    "rückgabe",
    "tarifs",
];

/// Site search categories.
pub const SEARCH_CATEGORIES: &[&str] = &["", "docs", "shop", "blog"];

/// Events: category, action, optional name, optional value.
pub const EVENTS: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("video", "play", Some("Product tour"), None),
    ("video", "complete", Some("Product tour"), Some("93")),
    ("newsletter", "subscribe", Some("footer form"), None),
    ("navigation", "menu-open", None, None),
    ("scroll", "depth", Some("75%"), Some("75")),
    ("form", "submit", Some("contact"), None),
    (
        "shop",
        "add-to-wishlist",
        Some("Elephant mug"),
        Some("12.5"),
    ),
    ("error", "404", Some("/old/page"), None),
];

/// Files a visitor downloads.
pub const DOWNLOADS: &[&str] = &[
    "https://www.example.com/files/whitepaper-analytics-2026.pdf",
    "https://www.example.com/downloads/matomo-5.2.0.zip",
    "https://cdn.example.com/media/brochure.pdf?v=3",
    "https://www.example.com/files/price-list.xlsx",
];

/// External links a visitor follows.
pub const OUTLINKS: &[&str] = &[
    "https://github.com/matomo-org/matomo",
    "https://partner.example.org/integrations?ref=site",
    "https://www.example.net/case-study",
    "https://developer.mozilla.org/en-US/docs/Web/API/Navigator/sendBeacon",
];

/// Content blocks: name, piece, target.
pub const CONTENTS: &[(&str, &str, &str)] = &[
    ("Hero banner", "black-friday.jpg", "/shop/"),
    (
        "Sidebar ad",
        "Try the cloud for free",
        "https://www.example.com/cloud",
    ),
    ("Newsletter box", "Subscribe now", "/newsletter"),
];

/// Content interactions.
pub const INTERACTIONS: &[&str] = &["click", "hover", "submit"];

/// Products: SKU, name, category, price.
pub const PRODUCTS: &[(&str, &str, &str, f64)] = &[
    ("MUG-ELE-01", "Elephant mug", "Kitchen", 12.5),
    ("TSH-BLK-M", "T-shirt black (M)", "Apparel", 19.9),
    ("STK-PACK", "Sticker pack", "Accessories", 4.0),
    ("HOODIE-GRY-L", "Hoodie grey (L)", "Apparel", 49.0),
    ("BOOK-ANL", "Analytics handbook", "Books", 29.99),
];
