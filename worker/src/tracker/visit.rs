//! The in-memory `log_visit` row and the visit-level rules: Matomo's visit dimensions
//! (`onNewVisit`, `onExistingVisit`, `onConvertedVisit`) for CoreHome, Actions, Events,
//! Resolution, DevicePlugins, UserLanguage, VisitTime, VisitorInterest and CustomDimensions.
//!
//! A [`Visit`] is created from a request or loaded from MySQL, mutated in place hit by hit, and
//! rendered to columns by [`Visit::columns`]. No I/O here.

use super::sql::Val;

/// Where `last_idlink_va` points: an existing row or an action of the current batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRef {
    /// A committed idlink_va.
    Id(u64),
    /// Index into the batch's pending actions.
    Pending(usize),
}

/// One log_visit row.
#[derive(Debug, Clone, Default)]
pub struct Visit {
    /// idvisit (0 while the row is not inserted yet).
    pub idvisit: u64,
    /// Whether the row must be INSERTed at the end of the batch.
    pub is_new: bool,
    /// Whether the row changed in this batch.
    pub dirty: bool,
    /// idsite.
    pub idsite: u32,
    /// idvisitor.
    pub idvisitor: [u8; 8],
    /// config_id.
    pub config_id: [u8; 8],
    /// location_ip (4 or 16 bytes).
    pub location_ip: Vec<u8>,
    /// profilable.
    pub profilable: Option<i64>,
    /// user_id.
    pub user_id: Option<String>,
    /// visit_first_action_time.
    pub first: i64,
    /// visit_last_action_time.
    pub last: i64,
    /// visit_goal_buyer.
    pub goal_buyer: i64,
    /// visit_goal_converted.
    pub goal_converted: i64,
    /// visitor_returning.
    pub returning: i64,
    /// visitor_seconds_since_first.
    pub secs_since_first: Option<i64>,
    /// visitor_seconds_since_order.
    pub secs_since_order: Option<i64>,
    /// visitor_seconds_since_last.
    pub secs_since_last: Option<i64>,
    /// visitor_count_visits.
    pub count_visits: i64,
    /// visit_entry_idaction_name.
    pub entry_name: Option<u64>,
    /// visit_entry_idaction_url.
    pub entry_url: Option<u64>,
    /// visit_exit_idaction_name.
    pub exit_name: Option<u64>,
    /// visit_exit_idaction_url.
    pub exit_url: Option<u64>,
    /// visit_total_actions.
    pub total_actions: i64,
    /// visit_total_interactions.
    pub total_interactions: i64,
    /// visit_total_searches.
    pub total_searches: i64,
    /// visit_total_events.
    pub total_events: i64,
    /// visit_total_time.
    pub total_time: i64,
    /// referer_type.
    pub referer_type: Option<i64>,
    /// referer_name.
    pub referer_name: Option<String>,
    /// referer_keyword.
    pub referer_keyword: Option<String>,
    /// referer_url.
    pub referer_url: Option<String>,
    /// location_browser_lang.
    pub browser_lang: Option<String>,
    /// config_browser_engine, name, version.
    pub browser: [Option<String>; 3],
    /// config_client_type.
    pub client_type: Option<i64>,
    /// config_device_brand, model.
    pub device: [Option<String>; 2],
    /// config_device_type.
    pub device_type: Option<i64>,
    /// config_os, config_os_version.
    pub os: [Option<String>; 2],
    /// visitor_localtime.
    pub localtime: Option<String>,
    /// config_resolution.
    pub resolution: Option<String>,
    /// config_cookie, flash, java, pdf, quicktime, realplayer, silverlight, windowsmedia.
    pub flags: [Option<i64>; 8],
    /// location_city, country, region.
    pub location: [Option<String>; 3],
    /// location_latitude, longitude.
    pub latlong: [Option<f64>; 2],
    /// last_idlink_va.
    pub last_idlink_va: Option<LinkRef>,
    /// custom_dimension_1..5.
    pub dims: [Option<String>; 5],
}

/// Column list of log_visit in the order [`Visit::columns`] renders it (idvisit excluded).
pub const COLUMNS: [&str; 60] = [
    "idsite",
    "idvisitor",
    "visit_last_action_time",
    "config_id",
    "location_ip",
    "profilable",
    "user_id",
    "visit_first_action_time",
    "visit_goal_buyer",
    "visit_goal_converted",
    "visitor_returning",
    "visitor_seconds_since_first",
    "visitor_seconds_since_order",
    "visitor_count_visits",
    "visit_entry_idaction_name",
    "visit_entry_idaction_url",
    "visit_exit_idaction_name",
    "visit_exit_idaction_url",
    "visit_total_actions",
    "visit_total_interactions",
    "visit_total_searches",
    "referer_keyword",
    "referer_name",
    "referer_type",
    "referer_url",
    "location_browser_lang",
    "config_browser_engine",
    "config_browser_name",
    "config_browser_version",
    "config_client_type",
    "config_device_brand",
    "config_device_model",
    "config_device_type",
    "config_os",
    "config_os_version",
    "visit_total_events",
    "visitor_localtime",
    "visitor_seconds_since_last",
    "config_resolution",
    "config_cookie",
    "config_flash",
    "config_java",
    "config_pdf",
    "config_quicktime",
    "config_realplayer",
    "config_silverlight",
    "config_windowsmedia",
    "visit_total_time",
    "location_city",
    "location_country",
    "location_latitude",
    "location_longitude",
    "location_region",
    "last_idlink_va",
    "custom_dimension_1",
    "custom_dimension_2",
    "custom_dimension_3",
    "custom_dimension_4",
    "custom_dimension_5",
    "idvisit",
];

/// Number of real columns in [`COLUMNS`] before `idvisit`.
pub const NCOLS: usize = 59;

fn oi(v: Option<i64>) -> Val {
    v.map_or(Val::Null, Val::Int)
}
fn ou(v: Option<u64>) -> Val {
    v.map_or(Val::Null, |x| Val::Int(x as i64))
}
fn os(v: &Option<String>) -> Val {
    Val::opt_str(v.as_deref())
}

impl Visit {
    /// The row's values in [`COLUMNS`] order (first [`NCOLS`]); `link` resolves a pending
    /// last_idlink_va.
    pub fn columns(&self, link: impl Fn(LinkRef) -> Option<u64>) -> Vec<Val> {
        let f = |v: Option<f64>| v.map_or(Val::Null, Val::Float);
        vec![
            Val::Int(i64::from(self.idsite)),
            Val::Bin(self.idvisitor.to_vec()),
            Val::Time(self.last),
            Val::Bin(self.config_id.to_vec()),
            Val::Bin(self.location_ip.clone()),
            oi(self.profilable),
            os(&self.user_id),
            Val::Time(self.first),
            Val::Int(self.goal_buyer),
            Val::Int(self.goal_converted),
            Val::Int(self.returning),
            oi(self.secs_since_first),
            oi(self.secs_since_order),
            Val::Int(self.count_visits),
            ou(self.entry_name),
            ou(self.entry_url),
            ou(self.exit_name),
            ou(self.exit_url),
            Val::Int(self.total_actions),
            Val::Int(self.total_interactions),
            Val::Int(self.total_searches),
            os(&self.referer_keyword),
            os(&self.referer_name),
            oi(self.referer_type),
            os(&self.referer_url),
            os(&self.browser_lang),
            os(&self.browser[0]),
            os(&self.browser[1]),
            os(&self.browser[2]),
            oi(self.client_type),
            os(&self.device[0]),
            os(&self.device[1]),
            oi(self.device_type),
            os(&self.os[0]),
            os(&self.os[1]),
            Val::Int(self.total_events),
            self.localtime.clone().map_or(Val::Null, Val::TimeOfDay),
            oi(self.secs_since_last),
            os(&self.resolution),
            oi(self.flags[0]),
            oi(self.flags[1]),
            oi(self.flags[2]),
            oi(self.flags[3]),
            oi(self.flags[4]),
            oi(self.flags[5]),
            oi(self.flags[6]),
            oi(self.flags[7]),
            Val::Int(self.total_time),
            os(&self.location[0]),
            os(&self.location[1]),
            f(self.latlong[0]),
            f(self.latlong[1]),
            os(&self.location[2]),
            self.last_idlink_va
                .and_then(link)
                .map_or(Val::Null, |x| Val::Int(x as i64)),
            os(&self.dims[0]),
            os(&self.dims[1]),
            os(&self.dims[2]),
            os(&self.dims[3]),
            os(&self.dims[4]),
        ]
    }

    /// The SELECT list that [`Visit::from_row`] reads (prefixed by nothing; `v.` not needed).
    pub fn select_list() -> String {
        let mut cols: Vec<String> = vec!["idvisit".into()];
        for c in &COLUMNS[..NCOLS] {
            match *c {
                "visit_last_action_time" | "visit_first_action_time" => cols.push(format!(
                    "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', `{c}`)"
                )),
                "visitor_localtime" => cols.push(format!("CAST(`{c}` AS CHAR)")),
                "location_latitude" | "location_longitude" => {
                    cols.push(format!("CAST(`{c}` AS DOUBLE)"))
                }
                _ => cols.push(format!("`{c}`")),
            }
        }
        cols.join(", ")
    }

    /// Builds a visit from a row selected with [`Visit::select_list`].
    pub fn from_row(row: &mysql_async::Row) -> Visit {
        use mysql_async::Value as V;
        let get = |i: usize| -> V { row.as_ref(i).cloned().unwrap_or(V::NULL) };
        let int = |i: usize| -> Option<i64> {
            match get(i) {
                V::Int(x) => Some(x),
                V::UInt(x) => Some(x as i64),
                V::Bytes(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.trim().parse().ok()),
                V::Double(d) => Some(d as i64),
                V::Float(d) => Some(d as i64),
                _ => None,
            }
        };
        let fl = |i: usize| -> Option<f64> {
            match get(i) {
                V::Double(d) => Some(d),
                V::Float(d) => Some(f64::from(d)),
                V::Int(x) => Some(x as f64),
                V::Bytes(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.trim().parse().ok()),
                _ => None,
            }
        };
        let bytes = |i: usize| -> Vec<u8> {
            match get(i) {
                V::Bytes(b) => b,
                _ => Vec::new(),
            }
        };
        let st = |i: usize| -> Option<String> {
            match get(i) {
                V::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                V::NULL => None,
                other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
            }
        };
        let b8 = |i: usize| -> [u8; 8] {
            let b = bytes(i);
            let mut out = [0u8; 8];
            let n = b.len().min(8);
            out[..n].copy_from_slice(&b[..n]);
            out
        };
        // index 0 = idvisit, then COLUMNS order shifted by one
        let c = |name: &str| 1 + COLUMNS.iter().position(|x| *x == name).unwrap_or(0);
        let u = |name: &str| int(c(name)).map(|x| x as u64);
        Visit {
            idvisit: int(0).unwrap_or(0) as u64,
            is_new: false,
            dirty: false,
            idsite: int(c("idsite")).unwrap_or(0) as u32,
            idvisitor: b8(c("idvisitor")),
            config_id: b8(c("config_id")),
            location_ip: bytes(c("location_ip")),
            profilable: int(c("profilable")),
            user_id: st(c("user_id")),
            first: int(c("visit_first_action_time")).unwrap_or(0),
            last: int(c("visit_last_action_time")).unwrap_or(0),
            goal_buyer: int(c("visit_goal_buyer")).unwrap_or(0),
            goal_converted: int(c("visit_goal_converted")).unwrap_or(0),
            returning: int(c("visitor_returning")).unwrap_or(0),
            secs_since_first: int(c("visitor_seconds_since_first")),
            secs_since_order: int(c("visitor_seconds_since_order")),
            secs_since_last: int(c("visitor_seconds_since_last")),
            count_visits: int(c("visitor_count_visits")).unwrap_or(0),
            entry_name: u("visit_entry_idaction_name"),
            entry_url: u("visit_entry_idaction_url"),
            exit_name: u("visit_exit_idaction_name"),
            exit_url: u("visit_exit_idaction_url"),
            total_actions: int(c("visit_total_actions")).unwrap_or(0),
            total_interactions: int(c("visit_total_interactions")).unwrap_or(0),
            total_searches: int(c("visit_total_searches")).unwrap_or(0),
            total_events: int(c("visit_total_events")).unwrap_or(0),
            total_time: int(c("visit_total_time")).unwrap_or(0),
            referer_type: int(c("referer_type")),
            referer_name: st(c("referer_name")),
            referer_keyword: st(c("referer_keyword")),
            referer_url: st(c("referer_url")),
            browser_lang: st(c("location_browser_lang")),
            browser: [
                st(c("config_browser_engine")),
                st(c("config_browser_name")),
                st(c("config_browser_version")),
            ],
            client_type: int(c("config_client_type")),
            device: [st(c("config_device_brand")), st(c("config_device_model"))],
            device_type: int(c("config_device_type")),
            os: [st(c("config_os")), st(c("config_os_version"))],
            localtime: st(c("visitor_localtime")),
            resolution: st(c("config_resolution")),
            flags: [
                int(c("config_cookie")),
                int(c("config_flash")),
                int(c("config_java")),
                int(c("config_pdf")),
                int(c("config_quicktime")),
                int(c("config_realplayer")),
                int(c("config_silverlight")),
                int(c("config_windowsmedia")),
            ],
            location: [
                st(c("location_city")),
                st(c("location_country")),
                st(c("location_region")),
            ],
            latlong: [fl(c("location_latitude")), fl(c("location_longitude"))],
            last_idlink_va: u("last_idlink_va").map(LinkRef::Id),
            dims: [
                st(c("custom_dimension_1")),
                st(c("custom_dimension_2")),
                st(c("custom_dimension_3")),
                st(c("custom_dimension_4")),
                st(c("custom_dimension_5")),
            ],
        }
    }
}

/// `visitor_seconds_since_first` of a new visit of a known visitor.
pub fn seconds_since_first(prev: &Visit, now: i64) -> Option<i64> {
    let p = prev.secs_since_first?;
    let v = p + (now - prev.first);
    (v >= 0).then_some(v)
}

/// `visitor_seconds_since_last` of a new visit of a known visitor (from the previous visit's
/// first action, as Matomo computes it).
pub fn seconds_since_last(prev: &Visit, now: i64) -> Option<i64> {
    if prev.first == 0 {
        return Some(0);
    }
    let v = now - prev.first;
    (v >= 0).then_some(v)
}

/// `visitor_seconds_since_order` of a new visit.
pub fn seconds_since_order(prev: Option<&Visit>, now: i64, is_order: bool) -> Option<i64> {
    if is_order {
        return Some(0);
    }
    let prev = prev?;
    let p = prev.secs_since_order?;
    Some(p + (now - prev.first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_names() {
        let v = Visit::default();
        assert_eq!(v.columns(|_| None).len(), NCOLS);
        assert_eq!(COLUMNS[NCOLS], "idvisit");
    }

    #[test]
    fn since_rules() {
        let prev = Visit {
            first: 100,
            secs_since_first: Some(10),
            secs_since_order: Some(5),
            ..Default::default()
        };
        assert_eq!(seconds_since_first(&prev, 200), Some(110));
        assert_eq!(seconds_since_last(&prev, 200), Some(100));
        assert_eq!(seconds_since_order(Some(&prev), 200, false), Some(105));
        assert_eq!(seconds_since_order(Some(&prev), 200, true), Some(0));
        assert_eq!(seconds_since_first(&prev, 50), None);
    }
}
