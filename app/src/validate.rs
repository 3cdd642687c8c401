//! Input rules, shared by the server and the browser. Every write DTO derives
//! `garde::Validate` with these as its rules; the services call `validate()` first, so the REST
//! API and the server functions refuse the same input with the same 422 field list.

use crate::error::{AppError, FieldError};
use crate::types::{BusinessHours, EmailProvider, Scope, WebhookEvent};

/// Every failing field, as the 422 body lists them.
impl From<garde::Report> for AppError {
    fn from(report: garde::Report) -> Self {
        AppError::Validation(
            report
                .iter()
                .map(|(path, error)| FieldError::new(&path.to_string(), error.message()))
                .collect(),
        )
    }
}

/// Runs a DTO's rules.
pub fn check<T: garde::Validate<Context = ()>>(value: &T) -> Result<(), AppError> {
    value.validate().map_err(AppError::from)
}

/// Applies `rule` to an optional field when it is present.
pub fn optional<T, U>(
    rule: fn(&U, &()) -> garde::Result,
) -> impl FnOnce(&Option<T>, &()) -> garde::Result
where
    T: std::ops::Deref<Target = U>,
    U: ?Sized,
{
    move |value, ctx| value.as_deref().map_or(Ok(()), |v| rule(v, ctx))
}

const RESERVED_SLUGS: [&str; 8] = [
    "api", "admin", "www", "app", "auth", "login", "static", "pkg",
];

/// A tenant's URL-safe identifier.
pub fn slug(slug: &str, _: &()) -> garde::Result {
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
    Err(garde::Error::new(message))
}

/// A display name: not blank, at most `MAX` characters once trimmed.
pub fn name<const MAX: usize>(value: &str, _: &()) -> garde::Result {
    let value = value.trim();
    if value.is_empty() {
        Err(garde::Error::new("must not be empty"))
    } else if value.chars().count() > MAX {
        Err(garde::Error::new(format!(
            "must be at most {MAX} characters"
        )))
    } else {
        Ok(())
    }
}

/// The shape of an email address (delivery is not verified).
pub fn email(value: &str, _: &()) -> garde::Result {
    let value = value.trim();
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
        Ok(())
    } else {
        Err(garde::Error::new("is not a valid email address"))
    }
}

/// An IANA time zone name (checked against the tz database on the server).
pub fn timezone(value: &str, _: &()) -> garde::Result {
    #[cfg(feature = "ssr")]
    {
        if value.trim().parse::<chrono_tz::Tz>().is_err() {
            return Err(garde::Error::new(
                "is not an IANA time zone such as Europe/Berlin",
            ));
        }
    }
    let _ = value;
    Ok(())
}

/// A web origin: scheme, host and optional port, nothing else.
/// An email address, or a whole domain written `@example.com`.
pub fn recipient(value: &str, _: &()) -> garde::Result {
    match value.trim().strip_prefix('@') {
        Some(domain) => email(&format!("x@{domain}"), &()),
        None => email(value, &()),
    }
}

pub fn origin(value: &str, _: &()) -> garde::Result {
    let value = value.trim().trim_end_matches('/');
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let ok = rest.is_some_and(|host| {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(garde::Error::new(format!(
            "'{value}' is not an origin like https://shop.example"
        )))
    }
}

/// At most 20 origins, each an [`origin`].
pub fn origins(values: &[String], ctx: &()) -> garde::Result {
    if values.len() > 20 {
        return Err(garde::Error::new("at most 20 origins"));
    }
    values.iter().try_for_each(|o| origin(o, ctx))
}

/// The form an origin is compared in: trimmed, lower-case, no trailing slash.
pub fn normal_origin(value: &str) -> String {
    value.trim().trim_end_matches('/').to_lowercase()
}

/// A permission such as `knowledge:read`.
pub fn scope(value: &str, _: &()) -> garde::Result {
    match Scope::parse(value.trim()) {
        Some(_) => Ok(()),
        None => Err(garde::Error::new(format!(
            "unknown scope '{value}' (expected AREA:read or AREA:write)"
        ))),
    }
}

/// Each weekday at most once, `HH:MM` times, opening before closing.
pub fn business_hours(hours: &[BusinessHours], _: &()) -> garde::Result {
    let mut seen = [false; 7];
    for h in hours {
        let day = usize::from(h.weekday);
        if day > 6 {
            return Err(garde::Error::new(
                "weekday must be 0 (Monday) to 6 (Sunday)",
            ));
        }
        if std::mem::replace(&mut seen[day], true) {
            return Err(garde::Error::new("each weekday may appear once"));
        }
        let parse = |t: &str| chrono::NaiveTime::parse_from_str(t, "%H:%M");
        match (parse(&h.open), parse(&h.close)) {
            (Ok(open), Ok(close)) if open < close => {}
            (Ok(_), Ok(_)) => {
                return Err(garde::Error::new(
                    "opening time must be before closing time",
                ))
            }
            _ => return Err(garde::Error::new("times must be HH:MM")),
        }
    }
    Ok(())
}

/// `local/<name>` or `openai/<name>`.
pub fn embedding_model(value: &str, _: &()) -> garde::Result {
    let ok = value.split_once('/').is_some_and(|(provider, model)| {
        matches!(provider, "local" | "openai")
            && !model.is_empty()
            && model.len() <= 190
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
    });
    if ok {
        Ok(())
    } else {
        Err(garde::Error::new(
            "must be local/<model> or openai/<model>, e.g. local/all-MiniLM-L6-v2",
        ))
    }
}

/// An agent's name: 1–64 lowercase letters, digits, `-` or `_`, starting with a letter.
pub fn agent_name(value: &str, _: &()) -> garde::Result {
    let ok = value.len() <= 64
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(garde::Error::new(
            "must be 1–64 lowercase letters, digits, - or _, starting with a letter",
        ))
    }
}

/// A document tag: 1–50 characters, no `|` (the index's separator) and no control characters.
pub fn tag(value: &str, _: &()) -> garde::Result {
    let len = value.chars().count();
    if len == 0 || len > 50 {
        Err(garde::Error::new("must be 1–50 characters"))
    } else if value.contains('|') || value.chars().any(char::is_control) {
        Err(garde::Error::new(
            "must not contain | or control characters",
        ))
    } else {
        Ok(())
    }
}

/// A BCP 47-like language tag: `en`, `pt-BR`, `zh-Hant`.
pub fn language(value: &str, _: &()) -> garde::Result {
    let ok = value.len() <= 16
        && value.split('-').enumerate().all(|(i, part)| {
            (if i == 0 { 2..=3 } else { 2..=8 }).contains(&part.len())
                && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(garde::Error::new(
            "must be a language tag such as en or pt-BR",
        ))
    }
}

/// `auto` (the visitor's browser decides) or a [`language`] tag.
pub fn widget_language(value: &str, ctx: &()) -> garde::Result {
    if value == "auto" {
        Ok(())
    } else {
        language(value, ctx)
    }
}

/// A colour as `#rrggbb`.
pub fn hex_color(value: &str, _: &()) -> garde::Result {
    let ok = value.len() == 7
        && value.starts_with('#')
        && value[1..].chars().all(|c| c.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(garde::Error::new("must be a colour such as #2563eb"))
    }
}

/// Document metadata: keys 1–64 characters of letters, digits, `_`, `-`, `.`; values up to 500.
pub fn metadata(values: &std::collections::BTreeMap<String, String>, _: &()) -> garde::Result {
    for (key, value) in values {
        let key_ok = (1..=64).contains(&key.len())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !key_ok {
            return Err(garde::Error::new(format!(
                "key {key:?} must be 1–64 letters, digits, _, - or ."
            )));
        }
        if value.chars().count() > 500 {
            return Err(garde::Error::new(format!(
                "the value of {key:?} must be at most 500 characters"
            )));
        }
    }
    Ok(())
}

/// A sender: `Name <address>` or a bare address, one line, at most 320 characters.
pub fn mailbox(value: &str, ctx: &()) -> garde::Result {
    let value = value.trim();
    if value.len() > 320 || value.chars().any(char::is_control) {
        return Err(garde::Error::new(
            "must be one line of at most 320 characters",
        ));
    }
    let address = match value.rsplit_once('<') {
        Some((name, rest)) => {
            if name.contains(['<', '>', '"']) {
                return Err(garde::Error::new(
                    "the name before <address> may not hold <, > or quotes",
                ));
            }
            rest.strip_suffix('>').unwrap_or("")
        }
        None => value,
    };
    email(address, ctx).map_err(|_| {
        garde::Error::new("must be an address like hello@shop.example or Shop <hello@shop.example>")
    })
}

/// A DNS name with at least two labels, e.g. `mg.shop.example`.
pub fn domain(value: &str, _: &()) -> garde::Result {
    let value = value.trim().trim_end_matches('.');
    let labels_ok = value.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if value.len() > 253 || !value.contains('.') || !labels_ok {
        Err(garde::Error::new(
            "must be a domain name such as mg.shop.example",
        ))
    } else {
        Ok(())
    }
}

/// A provider a tenant configures itself (not the platform's relay).
pub fn own_email_provider(value: &EmailProvider, _: &()) -> garde::Result {
    if *value == EmailProvider::Platform {
        Err(garde::Error::new(
            "must be sendgrid or mailgun; delete the settings to use the platform's email",
        ))
    } else {
        Ok(())
    }
}

/// The events of a webhook endpoint: at least one, each once, none that cannot be subscribed to.
pub fn webhook_events(events: &[WebhookEvent], _: &()) -> garde::Result {
    if events.is_empty() {
        return Err(garde::Error::new("choose at least one event"));
    }
    if events.contains(&WebhookEvent::Test) {
        return Err(garde::Error::new(
            "webhook.test is sent on request only and cannot be subscribed to",
        ));
    }
    for (i, event) in events.iter().enumerate() {
        if events[..i].contains(event) {
            return Err(garde::Error::new(format!(
                "{} is listed twice",
                event.as_str()
            )));
        }
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host, at most 2000 characters, no spaces.
pub fn http_url(value: &str, _: &()) -> garde::Result {
    let value = value.trim();
    let host = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .filter(|host| !host.is_empty() && !host.contains('@'));
    if host.is_none() {
        Err(garde::Error::new(
            "must be an http:// or https:// URL such as https://api.openai.com/v1",
        ))
    } else if value.len() > 2000 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(garde::Error::new(
            "must be at most 2000 characters, without spaces",
        ))
    } else {
        Ok(())
    }
}

/// A provider's API key: 1–4096 characters, no spaces or control characters.
pub fn api_key(value: &str, _: &()) -> garde::Result {
    if value.is_empty() || value.len() > 4096 {
        Err(garde::Error::new("must be 1–4096 characters"))
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(garde::Error::new("must not contain spaces"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CreateUser, Role, UpdateTenant};

    #[test]
    fn emails_names_and_zones() {
        assert!(email(" Alice@Example.COM ", &()).is_ok());
        for bad in ["", "alice", "a@b", "a@@b.c", "@b.c", "a b@c.d"] {
            assert!(email(bad, &()).is_err(), "{bad}");
        }
        assert!(name::<3>(" abc ", &()).is_ok());
        assert!(name::<3>("abcd", &()).is_err());
        assert!(name::<3>("  ", &()).is_err());
        #[cfg(feature = "ssr")]
        {
            assert!(timezone("Europe/Berlin", &()).is_ok());
            assert!(timezone("Mars/Olympus", &()).is_err());
        }
    }

    #[test]
    fn slugs() {
        for good in ["acme", "acme-dental", "a1b2c3"] {
            assert!(slug(good, &()).is_ok(), "{good}");
        }
        for bad in [
            "ab", "Acme", "1acme", "acme-", "ac--me", "api", "acme_x", "ac me",
        ] {
            assert!(slug(bad, &()).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_scheme_host_port() {
        for good in [
            "https://shop.example",
            "http://localhost:8080",
            "https://a.b/",
        ] {
            assert!(origin(good, &()).is_ok(), "{good}");
        }
        for bad in [
            "shop.example",
            "https://a.b/path",
            "ftp://a.b",
            "https://",
            "https://a b",
        ] {
            assert!(origin(bad, &()).is_err(), "{bad}");
        }
        assert_eq!(
            normal_origin(" https://Shop.Example/ "),
            "https://shop.example"
        );
    }

    #[test]
    fn hours() {
        let h = |weekday, open: &str, close: &str| BusinessHours {
            weekday,
            open: open.into(),
            close: close.into(),
        };
        let ok = |hours: &[BusinessHours]| business_hours(hours, &()).is_ok();
        assert!(ok(&[h(0, "09:00", "17:00"), h(4, "08:30", "12:00")]));
        assert!(!ok(&[h(7, "09:00", "17:00")]));
        assert!(!ok(&[h(0, "17:00", "09:00")]));
        assert!(!ok(&[h(0, "9am", "5pm")]));
        assert!(!ok(&[h(1, "09:00", "17:00"), h(1, "10:00", "11:00")]));
    }

    #[test]
    fn reports_list_every_failing_field() {
        let err = check(&CreateUser {
            email: "nope".into(),
            name: " ".into(),
            role: Role::Viewer,
        })
        .unwrap_err();
        let AppError::Validation(fields) = err else {
            panic!("{err:?}")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["email", "name"]);
        assert!(
            check(&UpdateTenant::default()).is_ok(),
            "absent fields are fine"
        );
    }

    #[test]
    fn knowledge_fields() {
        assert!(embedding_model("local/all-MiniLM-L6-v2", &()).is_ok());
        assert!(embedding_model("openai/text-embedding-3-small", &()).is_ok());
        assert!(embedding_model("cohere/embed", &()).is_err());
        assert!(embedding_model("local/", &()).is_err());
        assert!(tag("support", &()).is_ok());
        assert!(tag("a|b", &()).is_err());
        assert!(tag("", &()).is_err());
        assert!(language("pt-BR", &()).is_ok());
        assert!(language("english!", &()).is_err());
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("team".to_string(), "support".to_string());
        assert!(metadata(&meta, &()).is_ok());
        meta.insert("bad key".to_string(), "x".to_string());
        assert!(metadata(&meta, &()).is_err());
    }

    #[test]
    fn provider_urls_and_keys() {
        for good in [
            "https://api.openai.com/v1",
            "http://localhost:11434/v1",
            "https://x.openai.azure.com/openai/deployments/d?api-version=1",
        ] {
            assert!(http_url(good, &()).is_ok(), "{good}");
        }
        for bad in [
            "",
            "api.openai.com",
            "ftp://a.b",
            "https://",
            "https:///v1",
            "https://user:pw@a.b",
            "https://a b",
        ] {
            assert!(http_url(bad, &()).is_err(), "{bad}");
        }
        assert!(api_key("sk-abc123", &()).is_ok());
        assert!(api_key("", &()).is_err());
        assert!(api_key("sk abc", &()).is_err());
    }
}
