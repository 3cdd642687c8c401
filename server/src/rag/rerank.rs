//! Reranking through any service speaking the common `/rerank` API: Cohere, Jina and vLLM
//! answer `{"results": [{"index", "relevance_score"}]}`, Hugging Face TEI answers
//! `[{"index", "score"}]`; both are read.

use serde::Deserialize;
use serde_json::json;

use crate::config::CircuitConfig;
use crate::outbound::{HttpError, OutboundClient, OutboundError};

#[derive(Debug, thiserror::Error)]
#[error("reranking failed: {0}")]
pub struct RerankError(String);

#[derive(Clone)]
pub struct Reranker {
    url: String,
    model: Option<String>,
    api_key: Option<secrecy::SecretString>,
    client: OutboundClient,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Results { results: Vec<Scored> },
    Plain(Vec<Scored>),
}

#[derive(Deserialize)]
struct Scored {
    index: usize,
    #[serde(alias = "relevance_score")]
    score: f32,
}

impl Reranker {
    pub fn new(
        url: &str,
        model: Option<String>,
        api_key: Option<secrecy::SecretString>,
        circuit: CircuitConfig,
    ) -> Result<Reranker, RerankError> {
        Ok(Reranker {
            url: url.to_string(),
            model,
            api_key,
            client: OutboundClient::new("rerank", circuit)
                .map_err(|e| RerankError(e.to_string()))?,
        })
    }

    /// A relevance score per document, in the documents' order.
    pub async fn scores(&self, query: &str, documents: &[String]) -> Result<Vec<f32>, RerankError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = json!({
            "query": query,
            "documents": documents,
            "texts": documents,
            "top_n": documents.len(),
            "return_documents": false,
        });
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        let mut request = self.client.http().post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(secrecy::ExposeSecret::expose_secret(key));
        }
        let response = self.client.send(request).await.map_err(|e| match e {
            OutboundError::Unavailable(s) => RerankError(format!("{s} is unavailable")),
            OutboundError::Call(HttpError::Status { status, body }) => {
                RerankError(format!("the reranker answered {status}: {body}"))
            }
            OutboundError::Call(e) => RerankError(e.to_string()),
        })?;
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| RerankError(format!("unreadable answer: {e}")))?;
        let scored = match answer {
            Answer::Results { results } => results,
            Answer::Plain(list) => list,
        };
        let mut scores = vec![f32::NEG_INFINITY; documents.len()];
        for s in scored {
            if let Some(slot) = scores.get_mut(s.index) {
                *slot = s.score;
            }
        }
        Ok(scores)
    }
}
