//! Exponential back-off with jitter, as the kubelet retries registration (100 ms doubling to
//! 7 s). Every retry loop in the agent sleeps through one of these, so a failing master is
//! never hammered and a recovered one is found again within [`Backoff::max`].

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, next: initial }
    }

    /// The kubelet's registration back-off: 100 ms doubling to 7 s.
    pub const fn kubelet() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(7))
    }

    /// The next delay (with up to 20 % jitter, so thousands of nodes do not retry in step).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = base.mul_f64(rand::random_range(0.0..0.2));
        base + jitter
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let mut backoff = Backoff::kubelet();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] < Duration::from_millis(121));
        assert!(delays[1] >= Duration::from_millis(200));
        assert!(delays[9] >= Duration::from_secs(7) && delays[9] <= Duration::from_millis(8400));
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(121));
    }
}
