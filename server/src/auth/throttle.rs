//! Sign-in throttling: GCRA budgets in the shared store, per email and per client address, so
//! neither guessing one account's password nor spraying many accounts from one address gets
//! far, however many instances serve sign-ins. Emails are hashed before they become keys.

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
            format!("login-email:{email}"),
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
    async fn budget_per_email_then_refused() {
        let kv = Kv::new(Arc::new(MemoryStore::new()), "t");
        for _ in 0..3 {
            assert!(super::check_login(&kv, 3, "a@x.io", "1.1.1.1")
                .await
                .is_ok());
        }
        assert!(
            super::check_login(&kv, 3, "A@x.io", "2.2.2.2")
                .await
                .is_err(),
            "same email, other address"
        );
        assert!(
            super::check_login(&kv, 3, "b@x.io", "1.1.1.1")
                .await
                .is_ok(),
            "other email still has budget"
        );
    }
}
