//! The byte stream under a queue writer's own Redis connection: TCP, or a Unix domain socket
//! when the configured host is a path (QueuedTracking's rule: a `redisHost` that starts with
//! `/` is a socket, and the port is then ignored). The two behave alike for the writer; only
//! TCP has unsent bytes to discard when a failed connection closes.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tier_config::RedisConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

/// TCP keepalive of the writers' connections: first probe after this long idle, then every
/// interval, given up after the probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// Where a writer connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name or address and a TCP port.
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// The path of a Unix domain socket.
    Unix(PathBuf),
}

impl Address {
    /// The address of a standalone Redis as `[redis]` names it: its host as a socket path when
    /// it is one, else its first (validated: only) server.
    pub fn of(cfg: &RedisConfig) -> Result<Self, String> {
        if cfg.is_unix_socket() {
            return Ok(Self::Unix(PathBuf::from(&cfg.host)));
        }
        let server = cfg.servers()?.swap_remove(0);
        Ok(Self::Tcp {
            host: server.host,
            port: server.port,
        })
    }
}

/// A connected stream to Redis.
#[derive(Debug)]
pub enum Socket {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a Unix domain socket.
    Unix(UnixStream),
}

impl Socket {
    /// Connects to `address`; over TCP with Nagle off and keepalive on.
    pub async fn connect(address: &Address) -> io::Result<Self> {
        let (host, port) = match address {
            Address::Unix(path) => return UnixStream::connect(path).await.map(Self::Unix),
            Address::Tcp { host, port } => (host.as_str(), *port),
        };
        let socket = TcpStream::connect((host, port)).await?;
        socket.set_nodelay(true)?;
        // A connection that dies without a FIN or RST (a host gone, a firewall's state dropped)
        // is found within about a minute rather than by the next batch's timeout.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES);
        socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive)?;
        Ok(Self::Tcp(socket))
    }

    /// Reads what is there (waiting for something) onto the end of `buf`; 0 at end of stream.
    pub async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read_buf(buf).await,
            Self::Unix(s) => s.read_buf(buf).await,
        }
    }

    /// Writes some of `bytes`, returning how many.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(bytes).await,
            Self::Unix(s) => s.write(bytes).await,
        }
    }

    /// Writes all of `bytes`.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await,
            Self::Unix(s) => s.write_all(bytes).await,
        }
    }

    /// Waits until the socket has something to read (or is closed).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.readable().await,
            Self::Unix(s) => s.readable().await,
        }
    }

    /// Reads without waiting: `WouldBlock` when there is nothing.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.try_read(buf),
            Self::Unix(s) => s.try_read(buf),
        }
    }

    /// Makes the coming close discard what is still unsent: a TCP reset (`SO_LINGER` 0). A Unix
    /// socket has nothing to discard: what a write call took is already in Redis' receive
    /// queue, and a command cut short there is never run.
    pub fn discard_unsent_on_close(&self) {
        if let Self::Tcp(s) = self {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }
}
