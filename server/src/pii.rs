//! Masks personal data (email addresses, phone numbers, card-like numbers) in text bound for
//! logs and traces. Transcripts themselves are stored as they are: they belong to the tenant.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

struct Patterns {
    email: Regex,
    card: Regex,
    phone: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static PATTERNS: OnceLock<Option<Patterns>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            Some(Patterns {
                email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").ok()?,
                // 13–19 digits, optionally grouped by spaces or dashes.
                card: Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").ok()?,
                // International (+ and 8–20 digits and separators) or national in groups
                // (`(021) 555-0199`, `912 345 678`); dates and times do not match.
                phone: Regex::new(
                    r"(?:\+\d[\d\s().-]{6,18}\d)|(?:\(?\b\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}\b)",
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
    let masked = p.email.replace_all(text, "[email]");
    let masked = match p.card.replace_all(&masked, "[card]") {
        Cow::Borrowed(_) => masked,
        Cow::Owned(s) => Cow::Owned(s),
    };
    let masked = match p.phone.replace_all(&masked, "[phone]") {
        Cow::Borrowed(_) => masked,
        Cow::Owned(s) => Cow::Owned(s),
    };
    masked
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
}
