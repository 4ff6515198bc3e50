//! The two limits an SMSC contract sets on one bind: a send window (most `submit_sm`
//! awaiting their response at once) and a throughput (most `submit_sm` per second). The
//! window is a semaphore held for a request's round trip; the throughput is a pacer that
//! hands out evenly spaced send times, so a burst of sends is spread out, never refused.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// A window and a pacer.
#[derive(Debug)]
pub struct Throttle {
    window: Semaphore,
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Throttle {
    /// At most `window` requests outstanding and `per_second` started per second.
    pub fn new(window: u32, per_second: u32) -> Self {
        Throttle {
            window: Semaphore::new(window.max(1) as usize),
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(None),
        }
    }

    /// Waits for a place in the window, then for this request's send time. Keep the
    /// permit until the response arrives.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .window
            .acquire()
            .await
            .expect("the window semaphore is never closed");
        let at = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.interval);
            at
        };
        tokio::time::sleep_until(at).await;
        permit
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_are_spaced_to_the_rate() {
        let t = Throttle::new(100, 10);
        let start = Instant::now();
        for _ in 0..21 {
            drop(t.acquire().await);
        }
        // The first goes at once, then one every 100 ms.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_bounds_outstanding_requests() {
        let t = Arc::new(Throttle::new(2, 1000));
        let a = t.acquire().await;
        let _b = t.acquire().await;
        let t2 = t.clone();
        let third = tokio::spawn(async move {
            let _p = t2.acquire().await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!third.is_finished(), "a third request waits for a place");
        let freed = Instant::now();
        drop(a);
        assert!(third.await.unwrap() >= freed);
    }
}
