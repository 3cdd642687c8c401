//! Sign-in throttling (governor's keyed GCRA): per email and per client address, so neither
//! guessing one account's password nor spraying many accounts from one address gets far.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginThrottle {
    per_email: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<String>,
}

impl LoginThrottle {
    pub fn new(attempts_per_minute: u32) -> Self {
        let per_minute =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        LoginThrottle {
            per_email: RateLimiter::keyed(per_minute(attempts_per_minute)),
            per_ip: RateLimiter::keyed(per_minute(attempts_per_minute.saturating_mul(4))),
        }
    }

    /// Counts one attempt; `Err` carries how long to wait when the budget is spent.
    pub fn check(&self, email: &str, ip: &str) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        self.per_ip
            .check_key(&ip.to_string())
            .and_then(|_| self.per_email.check_key(&email.trim().to_lowercase()))
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Forgets keys whose budget has refilled, keeping memory bounded.
    pub fn prune(&self) {
        self.per_email.retain_recent();
        self.per_ip.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn budget_per_email_then_refused() {
        let t = super::LoginThrottle::new(3);
        for _ in 0..3 {
            assert!(t.check("a@x.io", "1.1.1.1").is_ok());
        }
        assert!(
            t.check("A@x.io", "2.2.2.2").is_err(),
            "same email, other address"
        );
        assert!(
            t.check("b@x.io", "1.1.1.1").is_ok(),
            "other email still has budget"
        );
    }
}
