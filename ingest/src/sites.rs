//! The cached copy of what edge validation needs from Matomo's database: the ids of the `site`
//! table, and the `user_token_auth` / `access` / `user` rows that decide whether a token_auth may
//! track for a site.
//!
//! [`Snapshot`] is immutable and pure (validation reads it without I/O); [`SiteCache`] holds the
//! current snapshot behind an `Arc` swapped by [`SiteCache::refresh`]. Token hashes are kept as
//! Matomo stores them (`sha512(token . salt)`), never the tokens themselves; nothing here logs a
//! token or a hash.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use mysql_async::prelude::Queryable as _;
use sha2::{Digest as _, Sha512};

/// One `user_token_auth` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The owner's login.
    pub login: String,
    /// `date_expired` as Unix seconds (UTC); `None` never expires.
    pub expires_at: Option<i64>,
    /// `secure_only=1`: as a super user's token it counts only when sent in a POST (as a site
    /// writer's, however sent).
    pub secure_only: bool,
}

/// What a token is allowed to do for one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Unknown, expired, sent insecurely, or without write access to the site.
    None,
    /// `admin` or `write` access to the site.
    Site,
    /// A super user (any site).
    SuperUser,
}

/// An immutable copy of the rows validation needs.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    sites: HashSet<u32>,
    tokens: HashMap<String, TokenRow>,
    super_users: HashSet<String>,
    write_access: HashSet<(String, u32)>,
    salt: String,
}

impl Snapshot {
    /// Builds a snapshot from rows (used by the loader and by tests).
    pub fn new(
        salt: &str,
        sites: impl IntoIterator<Item = u32>,
        tokens: impl IntoIterator<Item = (String, TokenRow)>,
        super_users: impl IntoIterator<Item = String>,
        write_access: impl IntoIterator<Item = (String, u32)>,
    ) -> Self {
        Self {
            sites: sites.into_iter().collect(),
            tokens: tokens.into_iter().collect(),
            super_users: super_users.into_iter().collect(),
            write_access: write_access.into_iter().collect(),
            salt: salt.to_owned(),
        }
    }

    /// Whether `idsite` is a row of the `site` table.
    pub fn site_exists(&self, idsite: u32) -> bool {
        self.sites.contains(&idsite)
    }

    /// Number of sites (for logs and metrics).
    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    /// Matomo's `UsersManager\Model::hashTokenAuth`: hex sha512 of the token followed by the salt.
    pub fn hash_token(&self, token: &str) -> String {
        let mut h = Sha512::new();
        h.update(token.as_bytes());
        h.update(self.salt.as_bytes());
        hex::encode(h.finalize())
    }

    /// What `token` may do. `idsite` `None` asks only for super-user rights; `via_post` is whether
    /// the token came in a POST; `now` is Unix seconds.
    ///
    /// As `Tracker\Request::authenticateSuperUserOrAdminOrWrite`: a live token of a user with
    /// `admin` or `write` access to the site counts however it was sent, `secure_only` or not
    /// (Matomo finds it among the site's `tracking_token_auth` hashes, which ignore the flag);
    /// only the super-user check, which goes through Matomo's `Auth`, refuses a `secure_only`
    /// token that did not come in a POST.
    pub fn grant(&self, token: &str, idsite: Option<u32>, via_post: bool, now: i64) -> Grant {
        if token.is_empty() {
            return Grant::None;
        }
        let Some(row) = self.tokens.get(&self.hash_token(token)) else {
            return Grant::None;
        };
        if row.expires_at.is_some_and(|t| t <= now) {
            return Grant::None;
        }
        if self.super_users.contains(&row.login) && (!row.secure_only || via_post) {
            return Grant::SuperUser;
        }
        match idsite {
            Some(id) if self.write_access.contains(&(row.login.clone(), id)) => Grant::Site,
            _ => Grant::None,
        }
    }
}

/// Errors reading the cache tables.
#[derive(Debug, thiserror::Error)]
#[error("mysql {what}: {source}")]
pub struct LoadError {
    what: &'static str,
    #[source]
    source: mysql_async::Error,
}

/// The current snapshot, shared by all requests, replaced atomically on refresh.
#[derive(Debug)]
pub struct SiteCache {
    current: RwLock<Option<Arc<Snapshot>>>,
    pool: mysql_async::Pool,
    prefix: String,
    salt: String,
}

impl SiteCache {
    /// A cache reading through `pool` from tables named with `prefix`; empty until refreshed.
    pub fn new(pool: mysql_async::Pool, prefix: &str, salt: &str) -> Self {
        Self {
            current: RwLock::new(None),
            pool,
            prefix: prefix.to_owned(),
            salt: salt.to_owned(),
        }
    }

    /// The current snapshot, `None` before the first successful load.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the snapshot (used by refresh and by tests).
    pub fn install(&self, snapshot: Snapshot) {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Some(Arc::new(snapshot));
    }

    /// Reads the tables again and installs the result; on error the old snapshot stays.
    pub async fn refresh(&self) -> Result<usize, LoadError> {
        let snapshot = self.load().await?;
        let count = snapshot.site_count();
        self.install(snapshot);
        Ok(count)
    }

    async fn load(&self) -> Result<Snapshot, LoadError> {
        let err = |what| move |source| LoadError { what, source };
        let mut conn = self.pool.get_conn().await.map_err(err("connect"))?;
        let p = &self.prefix;
        let sites: Vec<u32> = conn
            .query(format!("SELECT idsite FROM `{p}site`"))
            .await
            .map_err(err("reading site"))?;
        let tokens: Vec<(String, String, Option<i64>, u8)> = conn
            .query(format!(
                "SELECT password, login, \
                 TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', date_expired), secure_only \
                 FROM `{p}user_token_auth`"
            ))
            .await
            .map_err(err("reading user_token_auth"))?;
        let super_users: Vec<String> = conn
            .query(format!(
                "SELECT login FROM `{p}user` WHERE superuser_access = 1"
            ))
            .await
            .map_err(err("reading user"))?;
        let access: Vec<(String, u32)> = conn
            .query(format!(
                "SELECT login, idsite FROM `{p}access` WHERE access IN ('admin', 'write')"
            ))
            .await
            .map_err(err("reading access"))?;
        let tokens = tokens.into_iter().map(|(hash, login, expires_at, secure)| {
            (
                hash,
                TokenRow {
                    login,
                    expires_at,
                    secure_only: secure != 0,
                },
            )
        });
        Ok(Snapshot::new(
            &self.salt,
            sites,
            tokens,
            super_users,
            access,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let salt = "s4lt";
        let hash = |t: &str| Snapshot::new(salt, [], [], [], []).hash_token(t);
        let row = |login: &str, expires_at, secure_only| TokenRow {
            login: login.into(),
            expires_at,
            secure_only,
        };
        Snapshot::new(
            salt,
            [1, 2],
            [
                (hash("super"), row("admin", None, false)),
                (hash("writer"), row("bob", None, false)),
                (hash("old"), row("admin", Some(100), false)),
                (hash("secure"), row("admin", None, true)),
                (hash("secure-writer"), row("bob", None, true)),
            ],
            ["admin".to_string()],
            [("bob".to_string(), 2)],
        )
    }

    #[test]
    fn token_hash_is_sha512_of_token_and_salt() {
        let s = Snapshot::new("salt", [], [], [], []);
        assert_eq!(s.hash_token("tok"), hex::encode(Sha512::digest(b"toksalt")));
    }

    #[test]
    fn grants_follow_matomo_rules() {
        let s = snapshot();
        assert_eq!(s.grant("super", Some(1), false, 1000), Grant::SuperUser);
        assert_eq!(s.grant("writer", Some(2), false, 1000), Grant::Site);
        assert_eq!(s.grant("writer", Some(1), false, 1000), Grant::None);
        assert_eq!(s.grant("old", Some(1), false, 99), Grant::SuperUser);
        assert_eq!(s.grant("old", Some(1), false, 100), Grant::None);
        assert_eq!(s.grant("secure", Some(1), false, 1), Grant::None);
        assert_eq!(s.grant("secure", Some(1), true, 1), Grant::SuperUser);
        // A site writer's secure-only token counts over GET too, for that site only.
        assert_eq!(s.grant("secure-writer", Some(2), false, 1), Grant::Site);
        assert_eq!(s.grant("secure-writer", Some(2), true, 1), Grant::Site);
        assert_eq!(s.grant("secure-writer", Some(1), false, 1), Grant::None);
        assert_eq!(s.grant("secure-writer", None, true, 1), Grant::None);
        assert_eq!(s.grant("nope", Some(1), true, 1), Grant::None);
        assert_eq!(s.grant("", Some(1), true, 1), Grant::None);
        assert!(s.site_exists(2) && !s.site_exists(3));
    }
}
