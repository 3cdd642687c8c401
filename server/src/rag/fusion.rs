//! Reciprocal rank fusion of the vector and full-text legs, and the query-shape weighting.

use std::collections::HashMap;

use app::types::LegScore;

use super::lance::Candidate;

/// A fused result: the candidate, its RRF score and its place in each leg.
#[derive(Clone, Debug)]
pub struct Fused {
    pub candidate: Candidate,
    pub score: f32,
    pub vector: Option<LegScore>,
    pub fulltext: Option<LegScore>,
}

fn rank(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

/// One leg's list as fused results (rank and raw score kept, the score is the leg's own).
pub fn single(list: Vec<Candidate>, vector_leg: bool) -> Vec<Fused> {
    list.into_iter()
        .enumerate()
        .map(|(i, candidate)| {
            let leg = Some(LegScore {
                rank: rank(i),
                score: candidate.score,
            });
            Fused {
                score: candidate.score,
                vector: if vector_leg { leg } else { None },
                fulltext: if vector_leg { None } else { leg },
                candidate,
            }
        })
        .collect()
}

/// Reciprocal rank fusion: each chunk scores Σ weight / (k + rank) over the legs it appears
/// in. Ranks, not raw scores, are fused, so cosine similarities and BM25 need no common scale.
pub fn rrf(
    vector: Vec<Candidate>,
    fulltext: Vec<Candidate>,
    k: u32,
    weights: (f32, f32),
) -> Vec<Fused> {
    let k = k as f32;
    let mut by_id: HashMap<String, Fused> = HashMap::new();
    for (i, candidate) in vector.into_iter().enumerate() {
        let leg = LegScore {
            rank: rank(i),
            score: candidate.score,
        };
        by_id.insert(
            candidate.chunk_id.clone(),
            Fused {
                score: weights.0 / (k + leg.rank as f32),
                vector: Some(leg),
                fulltext: None,
                candidate,
            },
        );
    }
    for (i, candidate) in fulltext.into_iter().enumerate() {
        let leg = LegScore {
            rank: rank(i),
            score: candidate.score,
        };
        let add = weights.1 / (k + leg.rank as f32);
        by_id
            .entry(candidate.chunk_id.clone())
            .and_modify(|f| {
                f.score += add;
                f.fulltext = Some(leg);
            })
            .or_insert(Fused {
                score: add,
                vector: None,
                fulltext: Some(leg),
                candidate,
            });
    }
    let mut fused: Vec<Fused> = by_id.into_values().collect();
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.candidate.chunk_id.cmp(&b.candidate.chunk_id))
    });
    fused
}

/// Weights (vector, full-text) by the query's shape: quoted phrases, codes and short keyword
/// queries lean lexical; long natural-language questions lean semantic.
pub fn weights_for(query: &str) -> (f32, f32) {
    let words: Vec<&str> = query.split_whitespace().collect();
    let quoted = query.contains('"');
    let codes = words
        .iter()
        .any(|w| w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(char::is_alphabetic));
    if quoted || codes || words.len() <= 2 {
        (0.6, 1.0)
    } else if words.len() >= 8 || query.trim_end().ends_with('?') {
        (1.0, 0.7)
    } else {
        (1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, score: f32) -> Candidate {
        Candidate {
            chunk_id: id.into(),
            document_id: "d".into(),
            chunk_index: 0,
            text: String::new(),
            context: None,
            start: 0,
            end: 0,
            title: String::new(),
            source: String::new(),
            score,
        }
    }

    #[test]
    fn rrf_rewards_agreement_and_keeps_leg_ranks() {
        let vector = vec![c("a", 0.9), c("b", 0.8), c("c", 0.7)];
        let fulltext = vec![c("b", 12.0), c("c", 9.0), c("d", 3.0)];
        let fused = rrf(vector, fulltext, 60, (1.0, 1.0));
        let order: Vec<&str> = fused
            .iter()
            .map(|f| f.candidate.chunk_id.as_str())
            .collect();
        // b: 1/62 + 1/61; c: 1/63 + 1/62; a: 1/61; d: 1/63.
        assert_eq!(order, ["b", "c", "a", "d"]);
        let b = &fused[0];
        assert_eq!(b.vector.map(|l| l.rank), Some(2));
        assert_eq!(b.fulltext.map(|l| l.rank), Some(1));
        assert!((b.score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
        assert_eq!(fused[3].vector, None);
    }

    #[test]
    fn weights_move_the_order() {
        let fused = rrf(vec![c("v", 0.9)], vec![c("f", 5.0)], 60, (0.6, 1.0));
        assert_eq!(fused[0].candidate.chunk_id, "f");
        let fused = rrf(vec![c("v", 0.9)], vec![c("f", 5.0)], 60, (1.0, 0.7));
        assert_eq!(fused[0].candidate.chunk_id, "v");
    }

    #[test]
    fn query_shapes() {
        assert_eq!(weights_for("\"heat transfer\""), (0.6, 1.0));
        assert_eq!(weights_for("error E1234"), (0.6, 1.0));
        assert_eq!(weights_for("pump"), (0.6, 1.0));
        assert_eq!(
            weights_for("what is known about the boundary layer on a flat plate at high speed"),
            (1.0, 0.7)
        );
        assert_eq!(weights_for("boundary layer transition heating"), (1.0, 1.0));
    }
}
