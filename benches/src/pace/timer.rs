//! A deadline timer for a tokio runtime, deadlines set to the nanosecond: a Linux `timerfd`
//! polled by tokio's reactor. tokio's own timer fires on whole milliseconds, which would send hits up to
//! a millisecond after their due time and add that to every latency measured from it.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A deadline closer than this is treated as reached: arming the timer and waking from it
/// costs more than the wait.
const NOT_WORTH_WAITING: Duration = Duration::from_micros(2);

/// The timer's file descriptor, as tokio's reactor takes it.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One-shot deadlines on the monotonic clock (the clock of [`Instant`] on Linux).
pub struct Timer {
    fd: AsyncFd<Fd>,
}

impl Timer {
    /// A timer registered with the current tokio runtime's reactor.
    pub fn new() -> io::Result<Self> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Fd` owns the timer's descriptor, the `AsyncFd` owns the `Fd`, and
        // `as_raw_fd` always returns that descriptor: it stays open, and the same, for as long
        // as the registration lives. (The one unsafe call of this crate: tokio's registration
        // of a raw descriptor.)
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Returns at `deadline` (or at once when it has passed), letting the runtime's other
    /// tasks run meanwhile.
    pub async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(());
        };
        if wait < NOT_WORTH_WAITING {
            return Ok(());
        }
        self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from(wait)),
            TimerSetTimeFlags::empty(),
        )?;
        loop {
            let mut ready = self.fd.readable().await?;
            // The read consumes the expiry; "would block" means the readiness was stale.
            match ready.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Never early by more than [`NOT_WORTH_WAITING`], whatever the deadline; a passed deadline
    /// returns at once; the timer can be armed again after each expiry.
    #[test]
    fn sleep_until_returns_at_or_after_the_deadline() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let timer = Timer::new().unwrap();
            for micros in [0u64, 1, 3, 50, 200, 1_500, 5_000] {
                let deadline = Instant::now() + Duration::from_micros(micros);
                timer.sleep_until(deadline).await.unwrap();
                assert!(
                    Instant::now() + NOT_WORTH_WAITING >= deadline,
                    "{micros} µs: woke early"
                );
            }
            let passed = Instant::now() - Duration::from_millis(5);
            timer.sleep_until(passed).await.unwrap();
        });
    }
}
