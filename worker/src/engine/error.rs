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
    #[error(
        "queue {queue}: progress marker moved under us (another worker committed); batch rolled back"
    )]
    Fenced {
        /// The queue id.
        queue: u16,
    },
    /// The COMMIT of a batch failed in a way that leaves its outcome unknown; the shard is given
    /// up so the next lock holder decides from the progress marker.
    #[error(
        "queue {queue}: outcome of COMMIT unknown ({message}); the progress marker decides on the next lock"
    )]
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
    /// A worker task of a draining run (`process`) panicked outside a batch; the other tasks
    /// finished, and its queue is taken up by the next run once its lock expires.
    #[error("a worker task panicked: {0}")]
    TaskPanicked(String),
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
            EngineError::Options(_) | EngineError::Shutdown | EngineError::TaskPanicked(_) => false,
        }
    }
}

/// What a MySQL error says about the batch that met it. One classification for the whole
/// worker: the engine's own statements, the tracker ([`crate::tracker::BatchError`]) and the
/// test processors all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlFailure {
    /// The server cannot take work now (unreachable, shutting down, too many connections,
    /// read-only, out of memory or disk): retry with back-off; never blamed on entries.
    Unavailable,
    /// The statement met other work or a limit (deadlock, lock wait timeout, statement timeout,
    /// a killed query, a connection lost mid-statement, a packet over `max_allowed_packet`):
    /// retry with back-off; when the same batch keeps failing while the server answers, its
    /// entries become suspect (see `docs/worker.md`).
    Contention,
    /// The values cannot be stored (SQLSTATE classes 22 and 23 — out of range, incorrect value,
    /// too long, NULL, duplicate key, foreign key — and 45000 signals from triggers): a retry
    /// cannot cure it; the engine bisects the batch to find the entry.
    Data,
    /// Schema, privileges or SQL are wrong (unknown table or column, syntax, access denied): an
    /// operator must act. Retried with back-off, never blamed on entries (that would
    /// dead-letter the whole queue).
    Setup,
}

/// Server error codes whose cause is the server's state, not the statement.
const UNAVAILABLE_CODES: &[u16] = &[
    1021, // disk full
    1037, 1041, // out of memory
    1040, // too many connections
    1053, 1077, 1079, 1080, // shutdown in progress
    1114, // table is full
    1135, // cannot create thread
    1152, // aborted connection
    1203, 1226, // user connection / resource limits
    1290, 1792, 1836, // read-only (fail-over)
    1927, // connection killed
    4031, // disconnected for inactivity
];

/// Server error codes that contention or a limit explain.
const CONTENTION_CODES: &[u16] = &[
    1205, // lock wait timeout
    1213, // deadlock
    1317, // query interrupted (KILL QUERY)
    1969, // MariaDB max_statement_time exceeded
    3024, // MySQL max_execution_time exceeded
    1153, // packet bigger than max_allowed_packet
    1158, 1159, 1160, 1161, // network read/write errors mid-statement
    2006, 2013, // server gone away / lost connection during query
];

/// Server error codes that name a value which cannot be stored (most also carry SQLSTATE 22xxx
/// or 23xxx; listed for servers that report HY000).
const DATA_CODES: &[u16] = &[
    1048, // column cannot be null
    1062, // duplicate entry
    1216, 1217, 1451, 1452, // foreign key
    1264, // out of range
    1265, // data truncated
    1292, // incorrect datetime/number value
    1365, // division by zero
    1366, // incorrect string/integer value
    1406, // data too long
    1411, // incorrect value for function
    1644, // SIGNAL from a trigger or procedure
    1690, // value out of range in an expression
    3140, // invalid JSON
    3819, 4025, // CHECK constraint
];

/// Classifies a MySQL error (see [`MysqlFailure`]).
pub fn classify_mysql(e: &mysql_async::Error) -> MysqlFailure {
    match e {
        // The server may have died or dropped us because of what we sent: the health probe
        // decides which.
        mysql_async::Error::Io(_) => MysqlFailure::Contention,
        mysql_async::Error::Driver(_) => MysqlFailure::Unavailable,
        mysql_async::Error::Server(s) => classify_server(s.code, &s.state),
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => MysqlFailure::Setup,
    }
}

/// Classifies a server error by its code and SQLSTATE.
pub fn classify_server(code: u16, state: &str) -> MysqlFailure {
    if UNAVAILABLE_CODES.contains(&code) {
        MysqlFailure::Unavailable
    } else if CONTENTION_CODES.contains(&code) {
        MysqlFailure::Contention
    } else if DATA_CODES.contains(&code)
        || state.starts_with("22")
        || state.starts_with("23")
        || state == "45000"
    {
        MysqlFailure::Data
    } else if state.starts_with("40") {
        // Transaction rollback class (serialization failure, deadlock).
        MysqlFailure::Contention
    } else if state.starts_with("08") {
        // Connection exception class.
        MysqlFailure::Unavailable
    } else {
        MysqlFailure::Setup
    }
}

/// MySQL errors that a retry may cure: the server is unavailable or the statement met
/// contention. Data and setup errors are not.
pub fn mysql_is_transient(e: &mysql_async::Error) -> bool {
    matches!(
        classify_mysql(e),
        MysqlFailure::Unavailable | MysqlFailure::Contention
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        server_state(code, "HY000")
    }

    fn server_state(code: u16, state: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: state.into(),
        })
    }

    #[test]
    fn deadlocks_and_lock_waits_are_transient_syntax_errors_are_not() {
        assert!(mysql_is_transient(&server(1213)));
        assert!(mysql_is_transient(&server(1205)));
        assert!(!mysql_is_transient(&server(1064)));
        assert!(!mysql_is_transient(&server(1146)));
    }

    #[test]
    fn contention_and_timeouts_may_make_a_batch_suspect() {
        for code in [1205, 1213, 1317, 1969, 3024, 1153, 2013] {
            assert_eq!(
                classify_mysql(&server(code)),
                MysqlFailure::Contention,
                "{code}"
            );
        }
        let io = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(classify_mysql(&io), MysqlFailure::Contention);
        // A signal that imitates a deadlock is a deadlock.
        assert_eq!(classify_server(1213, "40001"), MysqlFailure::Contention);
    }

    #[test]
    fn server_state_errors_are_unavailable_never_blamed_on_entries() {
        for code in [1040, 1053, 1290, 1836, 1792, 1927, 1021] {
            assert_eq!(
                classify_mysql(&server(code)),
                MysqlFailure::Unavailable,
                "{code}"
            );
            assert!(mysql_is_transient(&server(code)), "{code}");
        }
        assert_eq!(classify_server(9999, "08S01"), MysqlFailure::Unavailable);
    }

    #[test]
    fn values_that_cannot_be_stored_are_data_errors() {
        for (code, state) in [
            (1264, "22003"),
            (1366, "22007"),
            (1406, "22001"),
            (1048, "23000"),
            (1062, "23000"),
            (1452, "23000"),
            (1644, "45000"),
            (1292, "HY000"),
        ] {
            let e = server_state(code, state);
            assert_eq!(classify_mysql(&e), MysqlFailure::Data, "{code}");
            assert!(!mysql_is_transient(&e), "{code}");
        }
        // A trigger's SIGNAL SQLSTATE '45000' with a custom errno, and unknown codes in the
        // data classes.
        assert_eq!(classify_server(1644, "45000"), MysqlFailure::Data);
        assert_eq!(classify_server(5001, "45000"), MysqlFailure::Data);
        assert_eq!(classify_server(4999, "22012"), MysqlFailure::Data);
        assert_eq!(classify_server(4998, "23505"), MysqlFailure::Data);
    }

    #[test]
    fn schema_and_privilege_errors_are_setup_errors() {
        for (code, state) in [
            (1064, "42000"),
            (1146, "42S02"),
            (1054, "42S22"),
            (1142, "42000"),
        ] {
            assert_eq!(classify_server(code, state), MysqlFailure::Setup, "{code}");
        }
    }
}
