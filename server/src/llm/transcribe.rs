//! Speech to text through an OpenAI-compatible `/v1/audio/transcriptions` endpoint (OpenAI's
//! Whisper, a whisper.cpp server, vLLM…), configured with `TRANSCRIBE_URL`; the Chatwoot
//! channel turns customers' voice messages into their text with it.

use async_openai::config::OpenAIConfig;
use async_openai::types::audio::{AudioInput, CreateTranscriptionRequest};
use secrecy::SecretString;

use crate::config::CircuitConfig;
use crate::outbound::{Breaker, OutboundError};

/// The largest audio file sent (OpenAI's own limit).
pub const MAX_AUDIO_BYTES: usize = 25 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct TranscribeConfig {
    /// The API's base, e.g. `https://api.openai.com/v1` (`TRANSCRIBE_URL`).
    pub base_url: String,
    /// `TRANSCRIBE_MODEL` (default `whisper-1`).
    pub model: String,
    /// `TRANSCRIBE_API_KEY`.
    pub api_key: Option<SecretString>,
    /// The longest one transcription may take (`TRANSCRIBE_TIMEOUT_SECS`).
    pub timeout: std::time::Duration,
}

/// A transcription client behind the `transcribe` circuit.
#[derive(Clone)]
pub struct Transcriber {
    client: async_openai::Client<OpenAIConfig>,
    model: String,
    breaker: Breaker,
}

impl Transcriber {
    pub fn new(config: TranscribeConfig, circuit: CircuitConfig) -> Transcriber {
        let http = super::http_client()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        // The job that asked retries with its own backoff.
        Transcriber {
            client: super::openai_client(&config.base_url, config.api_key.as_ref(), http),
            model: config.model,
            breaker: Breaker::new("transcribe", circuit),
        }
    }

    /// The text spoken in `audio` (named `filename`, whose extension tells the format).
    pub async fn transcribe(&self, filename: &str, audio: Vec<u8>) -> anyhow::Result<String> {
        let request = CreateTranscriptionRequest {
            file: AudioInput::from_vec_u8(filename.to_string(), audio),
            model: self.model.clone(),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        // The raw answer: async-openai's typed one needs OpenAI's `usage`, which whisper.cpp
        // and other compatible servers leave out; `text` is what they all send.
        let result = self
            .breaker
            .call(self.client.audio().transcription().create_raw(request))
            .await;
        metrics::histogram!("transcription_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(body) => {
                #[derive(serde::Deserialize)]
                struct Heard {
                    text: String,
                }
                let heard: Heard = serde_json::from_slice(&body).map_err(|e| {
                    anyhow::anyhow!("the transcription service answered without a text: {e}")
                })?;
                Ok(heard.text.trim().to_string())
            }
            Err(OutboundError::Unavailable(service)) => {
                anyhow::bail!("{service} is unavailable (circuit open)")
            }
            Err(OutboundError::Call(e)) => anyhow::bail!("the transcription failed: {e}"),
        }
    }
}
