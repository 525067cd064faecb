//! The engine's error type: what can go wrong while draining a shard, classified so the caller
//! knows whether to retry, give the shard up, or stop.
//!
//! Per-entry failures (undecodable bytes, a hit the tracker rejects) are *not* errors here: they
//! are dead-lettered inside the batch pipeline and the batch goes on.

use thiserror::Error;

/// Why the engine (or one shard run) stopped.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A Redis command failed (connection, timeout, script error).
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// A MySQL statement failed outside the tracker (progress marker, connection).
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// The shard lock is no longer ours (expired or taken over): the batch in hand was rolled
    /// back and nothing was trimmed.
    #[error("lost the lock of queue {queue}")]
    LockLost {
        /// The queue id.
        queue: u16,
    },
    /// Another worker committed a batch of this queue since we read its progress marker: our
    /// batch was rolled back. The next holder of the lock resumes from the marker.
    #[error("queue {queue}: progress marker moved under us (another worker committed); batch rolled back")]
    Fenced {
        /// The queue id.
        queue: u16,
    },
    /// The COMMIT of a batch failed in a way that leaves its outcome unknown; the shard is given
    /// up so the next lock holder decides from the progress marker.
    #[error("queue {queue}: outcome of COMMIT unknown ({message}); the progress marker decides on the next lock")]
    CommitUncertain {
        /// The queue id.
        queue: u16,
        /// The driver's message.
        message: String,
    },
    /// Bad options (e.g. zero queues).
    #[error("invalid engine options: {0}")]
    Options(String),
    /// Shutdown was requested while the operation waited.
    #[error("shutting down")]
    Shutdown,
}

impl EngineError {
    /// True for failures that a later retry may cure (network, server restarts, lock races).
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Redis(_)
            | EngineError::LockLost { .. }
            | EngineError::Fenced { .. }
            | EngineError::CommitUncertain { .. } => true,
            EngineError::Mysql(e) => mysql_is_transient(e),
            EngineError::Options(_) | EngineError::Shutdown => false,
        }
    }
}

/// MySQL errors that a retry may cure: connection problems, deadlocks, lock wait timeouts,
/// server shutdown, too many connections, read-only fail-overs.
pub fn mysql_is_transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(s) => matches!(
            s.code,
            1205 | 1213
                | 1040
                | 1053
                | 1077
                | 1079
                | 1080
                | 1152
                | 1153
                | 1158
                | 1159
                | 1160
                | 1161
                | 1290
                | 1317
                | 1927
                | 2006
                | 2013
                | 1836
                | 1792
                | 4031
        ),
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn deadlocks_and_lock_waits_are_transient_syntax_errors_are_not() {
        assert!(mysql_is_transient(&server(1213)));
        assert!(mysql_is_transient(&server(1205)));
        assert!(!mysql_is_transient(&server(1064)));
        assert!(!mysql_is_transient(&server(1146)));
    }
}
