//! Extraction in a child process. The parsers behind [`extract`] read files that tenants (and
//! anyone who can upload to a tenant) choose, and some failures cannot be caught in-process:
//! pdf-extract recurses without bound through a form that draws itself (a stack overflow
//! aborts the process), lopdf inflates streams without a cap (a decompression bomb exhausts
//! memory). So each document is extracted by `server extract-document`, a child process of
//! this binary with a memory limit (`EXTRACT_MEMORY_MB`), a CPU-time limit and a
//! wall-clock timeout (`EXTRACT_TIMEOUT_SECS`). A hostile file can only fail its own document.
//!
//! The file goes to the child's stdin; the child writes one JSON [`Outcome`] to stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::extract::{self, ExtractError, Extracted, Format};

/// Why a document was not extracted.
#[derive(Debug)]
pub enum Failure {
    /// The file: corrupt, crafted, too large, unsupported. Retrying will not help.
    Document(ExtractError),
    /// The extractor could not be run at all (retry later).
    Unavailable(String),
}

/// What the child reports.
#[derive(serde::Serialize, serde::Deserialize)]
enum Outcome {
    Extracted(Extracted),
    Failed(ExtractError),
}

/// How documents are extracted (part of [`super::KnowledgeConfig`]).
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The program run as `PROGRAM extract-document` (`EXTRACT_PROGRAM`; by default this
    /// binary, see [`Sandbox::this_binary`]).
    pub program: PathBuf,
    /// The child's memory limit (`EXTRACT_MEMORY_MB`, its data segment).
    pub memory_mb: u64,
    /// The child's CPU time and the wall-clock time it is given (`EXTRACT_TIMEOUT_SECS`).
    pub timeout: Duration,
}

/// The child's arguments (`server extract-document`, not shown in `--help`).
#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    #[arg(long)]
    format: String,
    /// Most bytes of text (see [`extract::text_limit`]).
    #[arg(long)]
    limit: usize,
    #[arg(long)]
    memory_mb: u64,
    #[arg(long)]
    cpu_secs: u64,
}

impl Sandbox {
    /// This process's own binary: `/proc/self/exe` on Linux, which still runs it after the
    /// file was replaced by a deploy; the path it was started from elsewhere.
    pub fn this_binary() -> PathBuf {
        let proc = PathBuf::from("/proc/self/exe");
        if proc.exists() {
            return proc;
        }
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("server"))
    }

    /// Extracts `bytes` as `format` in a child process, at most `limit` bytes of text. A child
    /// that crashes, runs out of memory or time fails the document with a reason.
    pub async fn extract(
        &self,
        format: Format,
        bytes: Vec<u8>,
        limit: usize,
    ) -> Result<Extracted, Failure> {
        let failed = |reason: String| Failure::Document(ExtractError::invalid(format, reason));
        let mut child = tokio::process::Command::new(&self.program)
            .arg("extract-document")
            .args(["--format", format.as_str()])
            .args(["--limit", &limit.to_string()])
            .args(["--memory-mb", &self.memory_mb.to_string()])
            .args(["--cpu-secs", &self.timeout.as_secs().max(1).to_string()])
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Failure::Unavailable(format!(
                    "the extractor {} could not start ({e})",
                    self.program.display()
                ))
            })?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Failure::Unavailable(
                "the extractor has no stdin or stdout".into(),
            ));
        };
        // JSON escaping at most sextuples the text (`\u001f`); anything longer is not ours.
        let most = (limit as u64).saturating_mul(6).saturating_add(1 << 20);
        let run = async {
            let feed = async move {
                // The child may stop reading (it failed early): that is its answer, not ours.
                let _ = stdin.write_all(&bytes).await;
                drop(stdin);
            };
            let mut out = Vec::new();
            let mut limited = stdout.take(most);
            let read = limited.read_to_end(&mut out);
            let (_, read) = tokio::join!(feed, read);
            read.map_err(|e| failed(format!("reading the extractor's answer: {e}")))?;
            let status = child
                .wait()
                .await
                .map_err(|e| Failure::Unavailable(format!("waiting for the extractor: {e}")))?;
            Ok::<_, Failure>((status, out))
        };
        let (status, out) = match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result?,
            // Dropping `child` kills it.
            Err(_) => {
                return Err(failed(format!(
                    "reading the file took longer than {} s",
                    self.timeout.as_secs()
                )))
            }
        };
        if !status.success() {
            metrics::counter!("extract_crashes_total", "format" => format.as_str()).increment(1);
            tracing::warn!(%format, %status, "the document extractor was stopped");
            return Err(failed(crash_reason(status, self)));
        }
        match serde_json::from_slice::<Outcome>(&out) {
            Ok(Outcome::Extracted(extracted)) => Ok(extracted),
            Ok(Outcome::Failed(error)) => Err(Failure::Document(error)),
            Err(e) => Err(failed(format!(
                "the extractor's answer is unreadable ({e})"
            ))),
        }
    }
}

/// Why a child ended without an answer, for the document's error.
fn crash_reason(status: std::process::ExitStatus, sandbox: &Sandbox) -> String {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        // SIGXCPU (24) and SIGKILL (9) end a child past its CPU time.
        return if signal == 24 || signal == 9 {
            format!(
                "reading the file took longer than {} s",
                sandbox.timeout.as_secs()
            )
        } else {
            format!(
                "the reader crashed on this file (it may be corrupt or crafted, or need more \
                 than {} MiB)",
                sandbox.memory_mb
            )
        };
    }
    format!(
        "the reader failed on this file ({status}; it may be corrupt or crafted, or need more \
         than {} MiB)",
        sandbox.memory_mb
    )
}

/// `server extract-document`: limits itself, reads the file from stdin, writes the outcome
/// to stdout. Runs before any runtime or thread is started.
pub fn child(args: ChildArgs) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        // The data segment: heap and private anonymous mappings (Linux ≥ 4.7), not the
        // binary's own mapped code, whose size differs between debug and release builds.
        let memory = args.memory_mb.saturating_mul(1024 * 1024);
        rlimit::Resource::DATA.set(memory, memory)?;
        rlimit::Resource::CPU.set(args.cpu_secs, args.cpu_secs.saturating_add(1))?;
        // A crash must not leave a core file of a tenant's document behind.
        rlimit::Resource::CORE.set(0, 0)?;
    }
    let format: Format = serde_json::from_value(serde_json::Value::String(args.format))?;
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    let outcome = match extract::extract(format, &bytes, args.limit) {
        Ok(extracted) => Outcome::Extracted(extracted),
        Err(error) => Outcome::Failed(error),
    };
    drop(bytes);
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &outcome)?;
    stdout.flush()?;
    Ok(())
}
