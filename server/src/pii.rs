//! Masks personal data (email addresses, phone numbers, card-like numbers, IBANs, US social
//! security numbers) in text bound for logs: every log line passes through [`mask`]
//! (`telemetry`), whatever wrote it. Transcripts themselves are stored as they are: they belong
//! to the tenant.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

struct Patterns {
    email: Regex,
    iban: Regex,
    card: Regex,
    ssn: Regex,
    phone: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static PATTERNS: OnceLock<Option<Patterns>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            Some(Patterns {
                email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").ok()?,
                // Country code, check digits, then 11–30 letters and digits, grouped by
                // spaces in fours or not at all (`PT50 0002 0123 1234 5678 9015 4`).
                iban: Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b").ok()?,
                // 13–19 digits, optionally grouped by spaces or dashes; masked only when
                // the Luhn check passes (long ids and timestamps in log lines mostly fail it).
                card: Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").ok()?,
                // US social security numbers.
                ssn: Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").ok()?,
                // International (+ and 8–20 digits and separators), national in groups
                // (`(021) 555-0199`, `912 345 678`) or local (`555-0199`); dates, times and
                // plain numbers (sizes, counts in log lines) do not match.
                phone: Regex::new(
                    r"(?:\+\d[\d\s().-]{6,18}\d)|(?:\(?\b\d{2,4}\)?[\s.-]\d{3,4}[\s.-]?\d{3,4}\b)|(?:\b\d{3}[\s.-]\d{4}\b)",
                )
                .ok()?,
            })
        })
        .as_ref()
}

/// `text` with emails, card-like numbers and phone numbers replaced by placeholders.
pub fn mask(text: &str) -> Cow<'_, str> {
    let Some(p) = patterns() else {
        return Cow::Borrowed("[masked]");
    };
    let mut masked = p.email.replace_all(text, "[email]");
    if let Cow::Owned(s) = p.iban.replace_all(&masked, "[iban]") {
        masked = Cow::Owned(s);
    }
    let card = |c: &regex::Captures<'_>| {
        if luhn(&c[0]) {
            "[card]".to_string()
        } else {
            c[0].to_string()
        }
    };
    if let Cow::Owned(s) = p.card.replace_all(&masked, card) {
        masked = Cow::Owned(s);
    }
    for (pattern, placeholder) in [(&p.ssn, "[ssn]"), (&p.phone, "[phone]")] {
        if let Cow::Owned(s) = replace_standalone(pattern, &masked, placeholder) {
            masked = Cow::Owned(s);
        }
    }
    masked
}

/// Replaces the matches of `pattern` that stand alone: not joined by a dash or underscore to
/// more of the same word, as the digit groups of a UUID are.
fn replace_standalone<'t>(pattern: &Regex, text: &'t str, placeholder: &str) -> Cow<'t, str> {
    let joined = |c: Option<char>| matches!(c, Some('-' | '_'));
    pattern.replace_all(text, |c: &regex::Captures<'_>| {
        let Some(m) = c.get(0) else {
            return String::new();
        };
        if joined(text[..m.start()].chars().next_back()) || joined(text[m.end()..].chars().next()) {
            m.as_str().to_string()
        } else {
            placeholder.to_string()
        }
    })
}

/// The Luhn checksum of the digits in `number` (what every payment card number passes).
fn luhn(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (1, doubled) if doubled > 9 => doubled - 9,
            (1, doubled) => doubled,
            _ => d,
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn emails_phones_and_cards_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask("Mail rui.silva+shop@example.co.uk or call +351 912 345 678 today"),
            "Mail [email] or call [phone] today"
        );
        assert_eq!(
            mask("card 4111 1111 1111 1111 exp 12/29"),
            "card [card] exp 12/29"
        );
        assert_eq!(mask("4111-1111-1111-1111"), "[card]");
        assert_eq!(mask("(021) 555-0199"), "[phone]");
        assert_eq!(
            mask("Book 2 rooms at 10:30 on 2026-12-01"),
            "Book 2 rooms at 10:30 on 2026-12-01"
        );
    }

    #[test]
    fn ssns_ibans_and_short_local_numbers_are_masked() {
        assert_eq!(mask("SSN 078-05-1120 on file"), "SSN [ssn] on file");
        assert_eq!(
            mask("pay to PT50 0002 0123 1234 5678 9015 4 please"),
            "pay to [iban] please"
        );
        assert_eq!(mask("IBAN DE89370400440532013000."), "IBAN [iban].");
        assert_eq!(mask("call 555-0199 after six"), "call [phone] after six");
        assert_eq!(
            mask("order 1234, room 12, 09:30-10:00"),
            "order 1234, room 12, 09:30-10:00"
        );
        // Log lines are full of numbers that are not personal data.
        let line =
            "bytes=20971520 took_ns=1732900000000000124 id=0199a2b3-4000-7000-8000-123456789012";
        assert_eq!(mask(line), line);
    }
}
