//! Sign-in throttling: GCRA budgets in the shared store, per client address and per email *from
//! that address*, so neither guessing one account's password nor spraying many accounts from
//! one address gets far, however many instances serve sign-ins, while nobody elsewhere can lock
//! a known user out by spending the budget of their email (behind a load balancer the address
//! comes from `TRUSTED_PROXIES`). Emails are hashed before they become keys.

use std::time::Duration;

use crate::kv::{Kv, Rate, Scope};

/// Counts one attempt; `Err` carries how long to wait when a budget is spent.
pub async fn check_login(
    kv: &Kv,
    attempts_per_minute: u32,
    email: &str,
    ip: &str,
) -> Result<(), Duration> {
    let email = super::api_key::digest(&email.trim().to_lowercase());
    let budgets = [
        (
            format!("login-ip:{ip}"),
            Rate::per_minute(attempts_per_minute.saturating_mul(4)),
        ),
        (
            format!("login-email:{email}:{ip}"),
            Rate::per_minute(attempts_per_minute),
        ),
    ];
    for (bucket, rate) in budgets {
        match kv.spend(Scope::Platform, &bucket, rate).await {
            Ok(d) if !d.allowed => return Err(d.retry_after),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sign-in throttle unavailable"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::kv::{Kv, MemoryStore};

    #[tokio::test]
    async fn budget_per_email_and_address_then_refused() {
        let kv = Kv::new(Arc::new(MemoryStore::new()), "t");
        for _ in 0..3 {
            assert!(super::check_login(&kv, 3, "a@x.io", "1.1.1.1")
                .await
                .is_ok());
        }
        assert!(
            super::check_login(&kv, 3, "A@x.io", "1.1.1.1")
                .await
                .is_err(),
            "same email, same address"
        );
        assert!(
            super::check_login(&kv, 3, "a@x.io", "2.2.2.2")
                .await
                .is_ok(),
            "an attacker elsewhere cannot lock the owner of a@x.io out"
        );
        assert!(
            super::check_login(&kv, 3, "b@x.io", "1.1.1.1")
                .await
                .is_ok(),
            "other email still has budget"
        );
        // Spraying many emails from one address runs into the address's budget (4×).
        let mut refused = false;
        for i in 0..20 {
            refused |= super::check_login(&kv, 3, &format!("u{i}@x.io"), "1.1.1.1")
                .await
                .is_err();
        }
        assert!(refused);
    }
}
