//! Input rules for tenants, users and keys.

use app::error::{AppError, FieldError};
use app::types::BusinessHours;

const RESERVED_SLUGS: [&str; 8] = [
    "api", "admin", "www", "app", "auth", "login", "static", "pkg",
];

pub fn slug(slug: &str) -> Result<(), AppError> {
    let ok_chars = slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let message = if !(3..=63).contains(&slug.len()) {
        "must be 3 to 63 characters long"
    } else if !ok_chars {
        "may contain only lowercase letters, digits and hyphens"
    } else if !slug.as_bytes()[0].is_ascii_lowercase() {
        "must start with a letter"
    } else if slug.ends_with('-') || slug.contains("--") {
        "must not end with a hyphen or contain two in a row"
    } else if RESERVED_SLUGS.contains(&slug) {
        "is reserved"
    } else {
        return Ok(());
    };
    Err(AppError::invalid("slug", message))
}

/// Trims and checks a display name; `field` names it in the error.
pub fn name(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        Err(FieldError::new(field, "must not be empty"))
    } else if value.chars().count() > max {
        Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ))
    } else {
        Ok(value.to_string())
    }
}

/// Lower-cases and checks an email address (shape only; delivery is not verified).
pub fn email(value: &str) -> Result<String, FieldError> {
    let value = value.trim().to_lowercase();
    let valid = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
                && value.matches('@').count() == 1
        });
    if valid {
        Ok(value)
    } else {
        Err(FieldError::new("email", "is not a valid email address"))
    }
}

pub fn timezone(value: &str) -> Result<String, FieldError> {
    value
        .trim()
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| FieldError::new("timezone", "is not an IANA time zone such as Europe/Berlin"))
}

pub fn business_hours(hours: &[BusinessHours]) -> Result<(), FieldError> {
    let field = "business_hours";
    let mut seen = [false; 7];
    for h in hours {
        let day = usize::from(h.weekday);
        if day > 6 {
            return Err(FieldError::new(
                field,
                "weekday must be 0 (Monday) to 6 (Sunday)",
            ));
        }
        if std::mem::replace(&mut seen[day], true) {
            return Err(FieldError::new(field, "each weekday may appear once"));
        }
        let parse = |t: &str| chrono::NaiveTime::parse_from_str(t, "%H:%M");
        match (parse(&h.open), parse(&h.close)) {
            (Ok(open), Ok(close)) if open < close => {}
            (Ok(_), Ok(_)) => {
                return Err(FieldError::new(
                    field,
                    "opening time must be before closing time",
                ))
            }
            _ => return Err(FieldError::new(field, "times must be HH:MM")),
        }
    }
    Ok(())
}

/// Collects field errors; `Ok` only when there are none.
pub fn all(errors: Vec<FieldError>) -> Result<(), AppError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["acme", "acme-dental", "a1b2c3"] {
            assert!(slug(good).is_ok(), "{good}");
        }
        for bad in [
            "ab", "Acme", "1acme", "acme-", "ac--me", "api", "acme_x", "ac me",
        ] {
            assert!(slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_and_zones() {
        assert_eq!(email(" Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in ["", "alice", "a@b", "a@@b.c", "@b.c", "a b@c.d"] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert_eq!(timezone("Europe/Berlin").unwrap(), "Europe/Berlin");
        assert!(timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn hours() {
        let h = |weekday, open: &str, close: &str| BusinessHours {
            weekday,
            open: open.into(),
            close: close.into(),
        };
        assert!(business_hours(&[h(0, "09:00", "17:00"), h(4, "08:30", "12:00")]).is_ok());
        assert!(business_hours(&[h(7, "09:00", "17:00")]).is_err());
        assert!(business_hours(&[h(0, "17:00", "09:00")]).is_err());
        assert!(business_hours(&[h(0, "9am", "5pm")]).is_err());
        assert!(business_hours(&[h(1, "09:00", "17:00"), h(1, "10:00", "11:00")]).is_err());
    }
}
