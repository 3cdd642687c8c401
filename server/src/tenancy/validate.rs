//! The normal forms values are stored in, once `app::validate` accepted them.

/// The form an email is stored in (after `app::validate::email` accepted it).
pub fn normal_email(value: &str) -> String {
    value.trim().to_lowercase()
}

/// The tz database's own spelling of a zone `app::validate::timezone` accepted.
pub fn canonical_timezone(value: &str) -> String {
    value
        .trim()
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_string())
        .unwrap_or_else(|_| value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        assert_eq!(normal_email(" Alice@Example.COM "), "alice@example.com");
        assert_eq!(canonical_timezone(" Europe/Berlin "), "Europe/Berlin");
    }
}
