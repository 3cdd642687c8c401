//! Structure-aware recursive splitting by tokens, with overlap (text-splitter): Markdown
//! headings, then paragraphs, sentences and words, never past `size` tokens. Optionally
//! parent-child: sections of `parent_size` tokens are split again into the chunks that get
//! matched, and each chunk remembers its section.

use std::path::Path;
use std::sync::Arc;

use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

/// How a knowledge base cuts its documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    pub size: usize,
    pub overlap: usize,
    pub parent_size: Option<usize>,
}

/// One chunk of a document's text, with byte offsets into that text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub start: usize,
    pub end: usize,
    /// The enclosing section when chunking parent-child.
    pub parent: Option<String>,
}

/// Counts tokens with the embedding model's tokenizer when it is installed; otherwise
/// estimates one token per four characters (close for English word pieces).
#[derive(Clone)]
pub enum TokenCounter {
    Model(Arc<Tokenizer>),
    Estimate,
}

impl TokenCounter {
    /// The local model's tokenizer (without its padding and truncation), or the estimate.
    pub fn from_model_dir(dir: &Path) -> TokenCounter {
        match Tokenizer::from_file(dir.join("tokenizer.json")) {
            Ok(mut tokenizer) => {
                tokenizer.with_padding(None);
                match tokenizer.with_truncation(None) {
                    Ok(_) => TokenCounter::Model(Arc::new(tokenizer)),
                    Err(_) => TokenCounter::Estimate,
                }
            }
            Err(_) => TokenCounter::Estimate,
        }
    }

    /// The longest start of `text` of at most `tokens` tokens, cut between two tokens.
    pub fn prefix<'t>(&self, text: &'t str, tokens: usize) -> &'t str {
        let estimate = || match text.char_indices().nth(tokens * 4) {
            Some((at, _)) => &text[..at],
            None => text,
        };
        match self {
            TokenCounter::Model(tokenizer) => match tokenizer.encode(text, false) {
                // Offsets are bytes of `text`: the first token left out starts the cut.
                Ok(e) if e.len() > tokens => e
                    .get_offsets()
                    .get(tokens)
                    .and_then(|(start, _)| text.get(..*start))
                    .map_or_else(estimate, str::trim_end),
                Ok(_) => text,
                Err(_) => estimate(),
            },
            TokenCounter::Estimate => estimate(),
        }
    }
}

impl ChunkSizer for TokenCounter {
    fn size(&self, chunk: &str) -> usize {
        match self {
            TokenCounter::Model(tokenizer) => tokenizer
                .encode(chunk, false)
                .map(|e| e.len())
                .unwrap_or_else(|_| chunk.chars().count().div_ceil(4)),
            TokenCounter::Estimate => chunk.chars().count().div_ceil(4),
        }
    }
}

fn split(
    text: &str,
    markdown: bool,
    size: usize,
    overlap: usize,
    counter: &TokenCounter,
) -> Vec<(usize, String)> {
    // Overlap must stay below the size; the plan is validated, this keeps the splitter total.
    let overlap = overlap.min(size.saturating_sub(1));
    let config = ChunkConfig::new(size.max(1))
        .with_sizer(counter.clone())
        .with_overlap(overlap)
        .unwrap_or_else(|_| ChunkConfig::new(size.max(1)).with_sizer(counter.clone()));
    if markdown {
        MarkdownSplitter::new(config)
            .chunk_indices(text)
            .map(|(at, s)| (at, s.to_string()))
            .collect()
    } else {
        TextSplitter::new(config)
            .chunk_indices(text)
            .map(|(at, s)| (at, s.to_string()))
            .collect()
    }
}

/// Cuts `text` by `plan`. Blocking (tokenising is CPU work): run it off the async threads.
pub fn chunk(text: &str, markdown: bool, plan: ChunkPlan, counter: &TokenCounter) -> Vec<Piece> {
    let Some(parent_size) = plan.parent_size.filter(|p| *p > plan.size) else {
        return split(text, markdown, plan.size, plan.overlap, counter)
            .into_iter()
            .map(|(start, text)| Piece {
                start,
                end: start + text.len(),
                text,
                parent: None,
            })
            .collect();
    };
    let mut pieces = Vec::new();
    for (parent_start, parent) in split(text, markdown, parent_size, 0, counter) {
        for (start, child) in split(&parent, markdown, plan.size, plan.overlap, counter) {
            let start = parent_start + start;
            pieces.push(Piece {
                start,
                end: start + child.len(),
                text: child,
                parent: Some(parent.clone()),
            });
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(size: usize, overlap: usize, parent_size: Option<usize>) -> ChunkPlan {
        ChunkPlan {
            size,
            overlap,
            parent_size,
        }
    }

    #[test]
    fn offsets_point_at_the_chunk_text() {
        let text = "First paragraph about pumps.\n\nSecond paragraph about valves and seals.\n\nThird one.";
        let pieces = chunk(text, false, plan(8, 0, None), &TokenCounter::Estimate);
        assert!(pieces.len() >= 2, "{pieces:?}");
        for p in &pieces {
            assert_eq!(&text[p.start..p.end], p.text);
            assert!(TokenCounter::Estimate.size(&p.text) <= 8);
        }
    }

    #[test]
    fn markdown_sections_are_kept_apart() {
        let text = "# Pumps\n\nPumps move water.\n\n# Valves\n\nValves stop water.";
        let pieces = chunk(text, true, plan(10, 0, None), &TokenCounter::Estimate);
        assert!(pieces
            .iter()
            .all(|p| !(p.text.contains("Pumps") && p.text.contains("Valves"))));
        assert!(pieces.iter().any(|p| p.text.starts_with("# Valves")));
    }

    #[test]
    fn overlap_repeats_text_between_neighbours() {
        let text = (0..60)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let pieces = chunk(&text, false, plan(20, 8, None), &TokenCounter::Estimate);
        assert!(pieces.len() > 2);
        assert!(
            pieces.windows(2).all(|w| w[1].start < w[0].end),
            "{pieces:?}"
        );
    }

    #[test]
    fn children_carry_their_parent_section() {
        let text = (0..40)
            .map(|i| format!("Sentence number {i} is here."))
            .collect::<Vec<_>>()
            .join(" ");
        let pieces = chunk(&text, false, plan(12, 0, Some(60)), &TokenCounter::Estimate);
        assert!(pieces.len() > 4);
        for p in &pieces {
            let parent = p.parent.as_deref().unwrap_or_default();
            assert!(parent.contains(&p.text));
            assert_eq!(&text[p.start..p.end], p.text);
        }
    }
}
