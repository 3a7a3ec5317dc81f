//! Token bucket: `rate` requests per second with a burst of one second's worth.

use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate == 0` disables limiting.
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    pub fn try_acquire(&mut self) -> bool {
        self.try_acquire_at(Instant::now())
    }

    pub fn try_acquire_at(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10);
        let allowed = (0..20).filter(|_| limiter.try_acquire_at(start)).count();
        assert_eq!(allowed, 10);
        assert!(limiter.try_acquire_at(start + Duration::from_millis(150)));
        assert!(!limiter.try_acquire_at(start + Duration::from_millis(150)));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut limiter = RateLimiter::new(0);
        assert!((0..100_000).all(|_| limiter.try_acquire()));
    }
}
