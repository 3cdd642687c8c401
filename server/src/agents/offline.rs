//! Answers without an LLM (no provider configured, or it is down): the sentences of the best
//! passages that share the most words with the question, quoted with their citations and
//! worded as an automatic answer.

use std::collections::HashSet;

use app::types::Source;

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "have",
    "how", "i", "in", "is", "it", "me", "my", "of", "on", "or", "our", "please", "the", "to", "we",
    "what", "when", "where", "which", "who", "why", "will", "with", "you", "your",
];

/// A crude stem, enough to match "costs" with "cost" and "opening" with "opens".
fn stem(word: &str) -> String {
    let mut w = word.to_lowercase();
    for suffix in ["ing", "ed", "es", "s"] {
        if w.len() > suffix.len() + 2 && w.ends_with(suffix) && !w.ends_with("ss") {
            w.truncate(w.len() - suffix.len());
            break;
        }
    }
    w.chars().take(6).collect()
}

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1 && !STOP_WORDS.contains(&w.to_lowercase().as_str()))
        .map(stem)
        .collect()
}

/// Sentences of Markdown-ish text: headings dropped, list items on their own, hard-wrapped
/// lines of a paragraph joined before splitting at `.`, `!` and `?`.
fn sentences(text: &str) -> Vec<String> {
    let mut units: Vec<String> = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut current = String::new();
        for line in paragraph.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with("- ") || line.starts_with("* ") {
                units.push(std::mem::take(&mut current));
                units.push(line[2..].replace("**", ""));
            } else {
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(line);
            }
        }
        units.push(current);
    }
    let mut out = Vec::new();
    for unit in units.iter().filter(|u| !u.trim().is_empty()) {
        let mut sentence = String::new();
        let mut chars = unit.chars().peekable();
        while let Some(c) = chars.next() {
            sentence.push(c);
            if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
                out.push(std::mem::take(&mut sentence).trim().to_string());
            }
        }
        if !sentence.trim().is_empty() {
            out.push(sentence.trim().to_string());
        }
    }
    out.retain(|s| s.len() > 3);
    out
}

/// The two sentences of `text` sharing the most words with the question, in their order.
fn best_sentences(question: &HashSet<String>, text: &str) -> Option<String> {
    let all = sentences(text);
    let mut scored: Vec<(usize, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (words(s).intersection(question).count(), i))
        .filter(|(score, _)| *score > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut picked: Vec<usize> = scored.iter().take(2).map(|(_, i)| *i).collect();
    picked.sort_unstable();
    if picked.is_empty() {
        return None;
    }
    Some(
        picked
            .into_iter()
            .map(|i| all[i].as_str())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The automatic answer to `question` from `sources` (best first), and the sources it cites.
pub fn answer(question: &str, sources: &[Source]) -> (String, Vec<Source>) {
    let question_words = words(question);
    let mut quotes = Vec::new();
    let mut cited = Vec::new();
    for source in sources.iter().take(3) {
        if let Some(quote) = best_sentences(&question_words, &source.text) {
            cited.push(source.clone());
            quotes.push(format!("> {quote} [{}]", cited.len()));
        }
    }
    if quotes.is_empty() {
        return (
            "This is an automatic answer: I could not find anything about that in our documents. \
Ask for a person at any time and a member of our team will help."
                .into(),
            Vec::new(),
        );
    }
    let list = cited
        .iter()
        .enumerate()
        .map(|(i, s)| format!("[{}] {}", i + 1, s.document_title))
        .collect::<Vec<_>>()
        .join("\n");
    (
        format!(
            "This is an automatic answer from our documents:\n\n{}\n\nSources:\n{list}",
            quotes.join("\n")
        ),
        cited,
    )
}

/// What the emergency specialist says without an LLM, before handing over to a person.
pub const EMERGENCY: &str = "If anyone is in danger, call your local emergency number now (112 in Europe, 911 in North America). \
I have alerted our team and a person will take over this conversation as soon as possible.";

/// What the customer reads when the conversation was handed to a person.
pub const HANDED_OFF: &str =
    "I have passed this conversation to a member of our team; they will reply here shortly.";

#[cfg(test)]
mod tests {
    use super::*;

    fn source(title: &str, text: &str) -> Source {
        Source {
            knowledge_base_id: uuid::Uuid::nil(),
            document_id: uuid::Uuid::nil(),
            document_title: title.into(),
            source: title.into(),
            chunk_index: 0,
            start: 0,
            end: text.len() as u64,
            score: 1.0,
            text: text.into(),
        }
    }

    #[test]
    fn quotes_the_matching_sentences_with_citations() {
        let sources = [
            source(
                "Handbook",
                "# Hours\nWe open at 9:00. The shop closes at 18:00\non weekdays. Parking is free.",
            ),
            source(
                "Pricing",
                "- **Basic**: 10 EUR per month.\n- **Team**: 45 EUR per month.",
            ),
        ];
        let (text, cited) = answer("When does the shop close on weekdays?", &sources);
        assert!(text.starts_with("This is an automatic answer"), "{text}");
        assert!(
            text.contains("> The shop closes at 18:00 on weekdays. [1]"),
            "{text}"
        );
        assert!(!text.contains("Parking"), "{text}");
        assert!(!text.contains("Pricing"), "unrelated passage cited: {text}");
        assert_eq!(cited.len(), 1);
        assert!(text.contains("[1] Handbook"));
    }

    #[test]
    fn says_so_when_nothing_matches() {
        let (text, cited) = answer(
            "Do you sell boats?",
            &[source("Pricing", "Plans cost 10 EUR.")],
        );
        assert!(text.contains("could not find"), "{text}");
        assert!(cited.is_empty());
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn word_forms_match_and_list_items_are_sentences() {
        let q = words("How much does a heat pump service cost?");
        assert!(
            q.contains(&stem("costs"))
                && q.contains(&stem("services"))
                && q.contains(&stem("pumps"))
        );
        assert_eq!(
            sentences(
                "Intro line one\nline two. Next!\n\n- **Basic**: 90 euros.\n- Comfort: 160 euros."
            ),
            vec![
                "Intro line one line two.",
                "Next!",
                "Basic: 90 euros.",
                "Comfort: 160 euros."
            ]
        );
    }
}
