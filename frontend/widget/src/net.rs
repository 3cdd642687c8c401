//! Talking to `/widget-api/v1` from the frame: JSON calls with the visitor's access token
//! (renewed once with the refresh token on a 401), and Server-Sent Events read from a `fetch`
//! body (an `EventSource` cannot send the token).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, ReadableStreamDefaultReader, Request, RequestInit, Response};

use app::types::{RefreshVisitorSession, StartVisitorSession, VisitorIdentity, VisitorSession};

use crate::json::{self, Read, Write};

/// Why a call failed, as the visitor is told.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// 429: try again in this many seconds.
    Busy(u64),
    /// A refusal the server explained (its `detail`, or the first field's message).
    Refused(String),
    /// The session ended (401 after a refresh).
    SignedOut,
    /// No answer, or a 5xx.
    Unavailable,
}

impl Failure {
    pub fn text(&self, t: &crate::text::Text) -> String {
        match self {
            Failure::Busy(s) => [t.busy, &s.to_string(), " s."].concat(),
            Failure::Refused(why) if why.is_empty() => t.refused.to_string(),
            Failure::Refused(why) => why.clone(),
            Failure::SignedOut => t.signed_out.to_string(),
            Failure::Unavailable => t.unavailable.to_string(),
        }
    }
}

/// The visitor's credentials; the refresh token is kept in the frame's storage (per site).
pub struct Session {
    pub public_id: String,
    pub origin: String,
    pub access: RefCell<String>,
    pub refresh: RefCell<String>,
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn storage_key(public_id: &str) -> String {
    format!("agent-widget:{public_id}")
}

pub fn stored_refresh(public_id: &str) -> Option<String> {
    storage()?.get_item(&storage_key(public_id)).ok().flatten()
}

pub fn forget(public_id: &str) {
    if let Some(s) = storage() {
        let _ = s.remove_item(&storage_key(public_id));
    }
}

async fn send(
    method: &str,
    path: &str,
    body: Option<String>,
    token: Option<&str>,
    abort: Option<&web_sys::AbortSignal>,
) -> Result<Response, Failure> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(signal) = abort {
        init.set_signal(Some(signal));
    }
    let headers = Headers::new().map_err(|_| Failure::Unavailable)?;
    if let Some(token) = token {
        let _ = headers.set("authorization", &format!("Bearer {token}"));
    }
    if let Some(body) = &body {
        let _ = headers.set("content-type", "application/json");
        init.set_body(&JsValue::from_str(body));
    }
    init.set_headers(&headers);
    let request = Request::new_with_str_and_init(path, &init).map_err(|_| Failure::Unavailable)?;
    let window = web_sys::window().ok_or(Failure::Unavailable)?;
    let response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|_| Failure::Unavailable)?;
    response
        .dyn_into::<Response>()
        .map_err(|_| Failure::Unavailable)
}

async fn text(response: &Response) -> String {
    match response.text() {
        Ok(p) => JsFuture::from(p)
            .await
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The failure a non-2xx answer stands for.
async fn failure(response: &Response) -> Failure {
    let status = response.status();
    if status == 401 {
        return Failure::SignedOut;
    }
    if status == 429 {
        let wait = response
            .headers()
            .get("retry-after")
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        return Failure::Busy(wait);
    }
    if status >= 500 {
        return Failure::Unavailable;
    }
    struct Field {
        message: String,
    }
    struct Problem {
        detail: Option<String>,
        errors: Option<Vec<Field>>,
    }
    json::read_structs! {
        Field { message }
        Problem { detail, errors }
    }
    let why = json::parse::<Problem>(&text(response).await).and_then(|body| {
        let first = body.errors.unwrap_or_default().into_iter().next();
        first.map(|f| f.message).or(body.detail)
    });
    Failure::Refused(why.unwrap_or_default())
}

/// The JSON value of a 2xx answer (parsed by the browser), or the failure it stands for. Not
/// generic, so each answer type adds only its deserialiser to the WASM.
async fn value(response: Response) -> Result<JsValue, Failure> {
    if !response.ok() {
        return Err(failure(&response).await);
    }
    let parsed = response.json().map_err(|_| Failure::Unavailable)?;
    JsFuture::from(parsed)
        .await
        .map_err(|_| Failure::Unavailable)
}

/// `value` read into `T`.
fn read<T: Read>(value: JsValue) -> Result<T, Failure> {
    T::read(value).ok_or(Failure::Unavailable)
}

/// Where else a refresh token is kept.
type Keeper = Box<dyn Fn(&str)>;

thread_local! {
    /// Also keeps the refresh token elsewhere: with the loader, on the host page, where a
    /// frame of another site may not keep storage (browsers block or partition it).
    static KEEP: RefCell<Option<Keeper>> = RefCell::new(None);
}

/// Sets where else refresh tokens are kept.
pub fn keep_with(keep: impl Fn(&str) + 'static) {
    KEEP.with(|k| *k.borrow_mut() = Some(Box::new(keep)));
}

fn store(session: &VisitorSession, public_id: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(&storage_key(public_id), &session.refresh_token);
    }
    KEEP.with(|k| {
        if let Some(keep) = k.borrow().as_ref() {
            keep(&session.refresh_token);
        }
    });
}

/// A new session, or the stored one renewed.
pub async fn open(
    public_id: &str,
    origin: &str,
    identity: Option<VisitorIdentity>,
    remembered: Option<String>,
) -> Result<(Rc<Session>, VisitorSession), Failure> {
    let resumed = match (remembered.or_else(|| stored_refresh(public_id)), &identity) {
        (Some(refresh), None) => renew(public_id, origin, &refresh).await.ok(),
        _ => None,
    };
    let session = match resumed {
        Some(s) => s,
        None => {
            let body = StartVisitorSession {
                origin: origin.to_string(),
                identity,
            };
            let body = json::text(&body).ok_or(Failure::Unavailable)?;
            let path = format!("/widget-api/v1/widgets/{public_id}/sessions");
            read(value(send("POST", &path, Some(body), None, None).await?).await?)?
        }
    };
    store(&session, public_id);
    let handle = Rc::new(Session {
        public_id: public_id.to_string(),
        origin: origin.to_string(),
        access: RefCell::new(session.access_token.clone()),
        refresh: RefCell::new(session.refresh_token.clone()),
    });
    Ok((handle, session))
}

async fn renew(public_id: &str, origin: &str, refresh: &str) -> Result<VisitorSession, Failure> {
    let body = RefreshVisitorSession {
        refresh_token: refresh.to_string(),
        origin: origin.to_string(),
    };
    let body = json::text(&body).ok_or(Failure::Unavailable)?;
    let response = send(
        "POST",
        "/widget-api/v1/sessions/refresh",
        Some(body),
        None,
        None,
    )
    .await?;
    let session: VisitorSession = read(value(response).await?)?;
    store(&session, public_id);
    Ok(session)
}

impl Session {
    /// Calls `path` with the access token, renewing it once when it has expired.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        abort: Option<&web_sys::AbortSignal>,
    ) -> Result<Response, Failure> {
        let token = self.access.borrow().clone();
        let response = send(method, path, body.clone(), Some(&token), abort).await?;
        if response.status() != 401 {
            return Ok(response);
        }
        let refresh = self.refresh.borrow().clone();
        let renewed = renew(&self.public_id, &self.origin, &refresh).await?;
        *self.access.borrow_mut() = renewed.access_token;
        *self.refresh.borrow_mut() = renewed.refresh_token;
        // `renew` kept the new refresh token.
        let token = self.access.borrow().clone();
        send(method, path, body, Some(&token), abort).await
    }

    pub async fn get<T: Read>(&self, path: &str) -> Result<T, Failure> {
        read(value(self.call("GET", path, None, None).await?).await?)
    }

    pub async fn post<B: Write, T: Read>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let body = json::text(body).ok_or(Failure::Unavailable)?;
        read(value(self.call(method, path, Some(body), None).await?).await?)
    }

    /// Calls `path` and hands each Server-Sent Event (`event`, its JSON data) to `on_event`
    /// until the stream ends (or `abort` fires).
    pub async fn stream(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        abort: Option<&web_sys::AbortSignal>,
        mut on_event: impl FnMut(&str, &str),
    ) -> Result<(), Failure> {
        let response = self.call(method, path, body, abort).await?;
        if !response.ok() {
            return Err(failure(&response).await);
        }
        let reader: ReadableStreamDefaultReader = response
            .body()
            .ok_or(Failure::Unavailable)?
            .get_reader()
            .unchecked_into();
        let decoder = web_sys::TextDecoder::new().map_err(|_| Failure::Unavailable)?;
        let mut buffer = String::new();
        loop {
            let chunk = JsFuture::from(reader.read())
                .await
                .map_err(|_| Failure::Unavailable)?;
            let done = js_sys::Reflect::get(&chunk, &"done".into())
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            if done {
                return Ok(());
            }
            let value: js_sys::Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())
                .map_err(|_| Failure::Unavailable)?
                .unchecked_into();
            let options = web_sys::TextDecodeOptions::new();
            options.set_stream(true);
            buffer.push_str(
                &decoder
                    .decode_with_js_u8_array_and_options(&value, &options)
                    .unwrap_or_default(),
            );
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if !data.is_empty() {
                    on_event(event, &data);
                }
            }
        }
    }
}
