//! A fake SMTP server on loopback that speaks enough real SMTP for lettre: greeting, EHLO/HELO,
//! MAIL FROM, RCPT TO, DATA (until `<CRLF>.<CRLF>`, dot-unstuffed), RSET, NOOP, QUIT. It
//! records every accepted message and can be scripted to answer a command with a failure
//! (`550` to RCPT, `451` to MAIL…), once or until cleared.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The command a scripted failure answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Mail,
    Rcpt,
    /// The reply after the message's final dot.
    Data,
}

/// One message the server accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent (headers, blank line, body), CRLF line endings.
    pub data: String,
}

impl Received {
    /// The first header named `name` (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }

    /// The body as the reader sees it: decoded from its transfer encoding, LF line endings.
    pub fn text(&self) -> String {
        use base64::Engine as _;
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "quoted-printable" => {
                quoted_printable::decode(self.body(), quoted_printable::ParseMode::Robust)
                    .expect("quoted-printable")
            }
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(self.body().replace("\r\n", ""))
                .expect("base64"),
            _ => self.body().as_bytes().to_vec(),
        };
        String::from_utf8(bytes)
            .expect("UTF-8")
            .replace("\r\n", "\n")
    }
}

struct Failure {
    at: Step,
    reply: String,
    /// `None`: every time.
    times: Option<usize>,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    failures: Vec<Failure>,
    connections: usize,
}

#[derive(Clone)]
pub struct FakeSmtp {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeSmtp {
    pub async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        FakeSmtp { port, state }
    }

    /// `SMTP_URL` for the app (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Answers every `at` command with `reply` (e.g. `550 5.1.1 No such user`).
    pub fn fail(&self, at: Step, reply: &str) {
        self.script(at, reply, None);
    }

    /// Answers the next `at` command with `reply`, then behaves again.
    pub fn fail_once(&self, at: Step, reply: &str) {
        self.script(at, reply, Some(1));
    }

    pub fn clear_failures(&self) {
        self.state.lock().unwrap().failures.clear();
    }

    fn script(&self, at: Step, reply: &str, times: Option<usize>) {
        self.state.lock().unwrap().failures.push(Failure {
            at,
            reply: reply.to_string(),
            times,
        });
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Waits until `n` messages arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fake SMTP server got {} of {n} messages",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The scripted failure for `step`, if any (spending one use of it).
fn scripted(state: &Mutex<State>, step: Step) -> Option<String> {
    let mut state = state.lock().unwrap();
    let index = state.failures.iter().position(|f| f.at == step)?;
    let failure = &mut state.failures[index];
    let reply = failure.reply.clone();
    if let Some(times) = &mut failure.times {
        *times -= 1;
        if *times == 0 {
            state.failures.remove(index);
        }
    }
    Some(reply)
}

/// The address inside `MAIL FROM:<a@b> …` / `RCPT TO:<a@b>`.
fn path(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |i| i + 1);
    let end = argument[start..]
        .find('>')
        .map_or(argument.len(), |i| start + i);
    argument[start..end].trim().to_string()
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut reply = async |text: &str| write.write_all(format!("{text}\r\n").as_bytes()).await;
    if reply("220 fake.smtp ESMTP ready").await.is_err() {
        return;
    }
    let (mut from, mut to): (Option<String>, Vec<String>) = (None, Vec::new());
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let (verb, argument) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let answer = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => "250-fake.smtp greets you\r\n250 HELP".to_string(),
            "HELO" => "250 fake.smtp".to_string(),
            "NOOP" => "250 OK".to_string(),
            "RSET" => {
                (from, to) = (None, Vec::new());
                "250 OK".to_string()
            }
            "QUIT" => {
                let _ = reply("221 bye").await;
                return;
            }
            "MAIL" => match scripted(&state, Step::Mail) {
                Some(failure) => failure,
                None => {
                    from = Some(path(argument));
                    to.clear();
                    "250 OK".to_string()
                }
            },
            "RCPT" if from.is_none() => "503 5.5.1 MAIL first".to_string(),
            "RCPT" => match scripted(&state, Step::Rcpt) {
                Some(failure) => failure,
                None => {
                    to.push(path(argument));
                    "250 OK".to_string()
                }
            },
            "DATA" if to.is_empty() => "503 5.5.1 RCPT first".to_string(),
            "DATA" => {
                if reply("354 end data with <CR><LF>.<CR><LF>").await.is_err() {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let text = String::from_utf8_lossy(&line);
                    if text == ".\r\n" || text == ".\n" {
                        break;
                    }
                    data.push_str(text.strip_prefix('.').unwrap_or(&text));
                }
                let data = data.strip_suffix("\r\n").unwrap_or(&data).to_string();
                match scripted(&state, Step::Data) {
                    Some(failure) => failure,
                    None => {
                        state.lock().unwrap().received.push(Received {
                            mail_from: from.take().unwrap_or_default(),
                            rcpt_to: std::mem::take(&mut to),
                            data,
                        });
                        "250 2.0.0 queued".to_string()
                    }
                }
            }
            _ => "502 5.5.2 command not recognised".to_string(),
        };
        if reply(&answer).await.is_err() {
            return;
        }
    }
}
