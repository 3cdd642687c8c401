//! The chat widget's frame: a small client-side Leptos app on `/widget/{public_id}`. The
//! loader (`/widget.js`) on the tenant's page creates the frame and talks to it with
//! `postMessage`, both sides checking the other's origin. The frame opens a visitor session,
//! shows the visitor's latest conversation, streams answers, and follows the conversation for
//! an operator's replies.

mod json;
mod net;
mod text;

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use uuid::Uuid;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use app::types::{
    ConversationStatus, Feedback, MessageRole, PostMessage, PrechatForm, PublicWidget,
    RateConversation, Rating, StartVisitorConversation, UpdateVisitor, Visitor,
    VisitorConversation, VisitorIdentity, VisitorMessage, VisitorSource, VisitorTranscript,
};
use net::{Failure, Session};
use text::Text;

/// What the loader sends: `init` (with the page and any identity), `open`, `reset`.
#[derive(Default)]
struct HostMessage {
    /// The message's `type`.
    kind: Option<String>,
    page_url: Option<String>,
    identity: Option<VisitorIdentity>,
    /// The refresh token the loader kept for this site (see `net::keep_with`).
    refresh_token: Option<String>,
}

impl json::Read for HostMessage {
    fn read(value: JsValue) -> Option<Self> {
        Some(HostMessage {
            kind: json::field(&value, "type")?,
            page_url: json::field(&value, "page_url")?,
            identity: json::field(&value, "identity")?,
            refresh_token: json::field(&value, "refresh_token")?,
        })
    }
}

/// Event data of a streamed answer.
struct Delta {
    text: String,
}

struct Sources {
    sources: Vec<VisitorSource>,
}

struct Done {
    status: ConversationStatus,
}

struct Problem {
    message: String,
}

json::read_structs! {
    Delta { text }
    Sources { sources }
    Done { status }
    Problem { message }
}

/// One line of the transcript; `id` is unknown until the server has it.
#[derive(Clone, Debug, PartialEq)]
struct Item {
    key: u32,
    id: Option<Uuid>,
    role: MessageRole,
    text: String,
    html: Option<String>,
    sources: Vec<VisitorSource>,
    feedback: Option<Rating>,
}

#[derive(Clone, Copy)]
struct Ui {
    items: RwSignal<Vec<Item>>,
    next_key: StoredValue<u32>,
    conversation: RwSignal<Option<Uuid>>,
    status: RwSignal<ConversationStatus>,
    widget: RwSignal<Option<PublicWidget>>,
    /// The widget's own words, in the frame page's language (see `text::chosen`).
    t: &'static Text,
    error: RwSignal<Option<String>>,
    busy: RwSignal<bool>,
    needs_details: RwSignal<bool>,
    rating: RwSignal<Option<u8>>,
    ending: RwSignal<bool>,
    /// Bumped when the conversation changes, so the old event stream stops.
    generation: RwSignal<u32>,
    /// Ends the event stream's request when the conversation changes.
    abort: StoredValue<Option<web_sys::AbortController>, LocalStorage>,
    session: StoredValue<Option<Rc<Session>>, LocalStorage>,
    host: StoredValue<String>,
    page_url: StoredValue<Option<String>>,
}

impl Ui {
    fn key(&self) -> u32 {
        let k = self.next_key.get_value();
        self.next_key.set_value(k + 1);
        k
    }

    fn item(&self, m: VisitorMessage) -> Item {
        Item {
            key: self.key(),
            id: Some(m.id),
            role: m.role,
            text: m.content,
            html: (m.role != MessageRole::User).then_some(m.html),
            sources: m.sources,
            feedback: m.feedback,
        }
    }

    /// Ends the event stream of the conversation shown (its loop and its request).
    fn stop_following(&self) {
        self.generation.update(|g| *g += 1);
        if let Some(previous) = self.abort.get_value() {
            previous.abort();
        }
        self.abort.set_value(None);
    }

    fn session(&self) -> Option<Rc<Session>> {
        self.session.get_value()
    }

    fn fail(&self, f: Failure) {
        self.error.set(Some(f.text(self.t)));
    }

    /// A message from the event stream: updates the line it confirms, or adds it.
    fn arrived(&self, m: VisitorMessage) {
        let role = m.role;
        let item = self.item(m);
        let mut is_new = false;
        self.items.update(|items| {
            if let Some(known) = items.iter_mut().find(|i| i.id == item.id) {
                known.html = item.html.clone();
                known.feedback = item.feedback;
                return;
            }
            let local = items.iter_mut().find(|i| {
                i.id.is_none()
                    && i.role == role
                    && (role != MessageRole::User || i.text.trim() == item.text.trim())
            });
            match local {
                Some(local) => {
                    *local = Item {
                        key: local.key,
                        ..item.clone()
                    }
                }
                None => {
                    is_new = true;
                    items.push(item.clone());
                }
            }
        });
        if is_new && role != MessageRole::User {
            tell_host(self, "message", &[("text", item.text.as_str().into())]);
        }
    }
}

fn window() -> web_sys::Window {
    web_sys::window().expect_throw("a window")
}

fn query(name: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    search.trim_start_matches('?').split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| js_sys::decode_uri_component(v).ok()?.as_string())?
    })
}

/// The page that embeds the frame: the browser's own record of it where there is one.
fn host_origin() -> String {
    let own = window().location().origin().unwrap_or_default();
    if query("preview").is_some() {
        return own;
    }
    // `location.ancestorOrigins` (Chromium, Safari): the browser's record, not the loader's word.
    let ancestor = js_sys::Reflect::get(&window().location(), &"ancestorOrigins".into())
        .ok()
        .filter(|list| !list.is_undefined())
        .and_then(|list| js_sys::Reflect::get(&list, &0.into()).ok())
        .and_then(|first| first.as_string());
    ancestor.or_else(|| query("origin")).unwrap_or(own)
}

/// Posts `{type: kind, …fields}` to the loader, on the host page's origin only.
fn tell_host(ui: &Ui, kind: &str, fields: &[(&str, JsValue)]) {
    let message = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&message, &"type".into(), &kind.into());
    for (name, value) in fields {
        let _ = js_sys::Reflect::set(&message, &(*name).into(), value);
    }
    if let Ok(Some(parent)) = window().parent() {
        let _ = parent.post_message(&message, &ui.host.get_value());
    }
}

/// Black or white text, whichever reads better on `color` (`#rrggbb`).
fn text_on(color: &str) -> &'static str {
    let channel = |i: usize| {
        let v = u8::from_str_radix(color.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
        let c = f64::from(v) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    if luminance > 0.179 {
        "#111827"
    } else {
        "#ffffff"
    }
}

async fn start(ui: Ui, identity: Option<VisitorIdentity>, remembered: Option<String>) {
    let Some(public_id) = window()
        .location()
        .pathname()
        .ok()
        .and_then(|p| p.rsplit('/').next().map(str::to_string))
    else {
        return;
    };
    let origin = ui.host.get_value();
    match net::open(&public_id, &origin, identity, remembered).await {
        Ok((session, opened)) => {
            ui.stop_following();
            ui.items.set(Vec::new());
            ui.conversation.set(None);
            let needs = opened.widget.prechat == PrechatForm::Required
                && (opened.visitor.name.is_none() || opened.visitor.email.is_none());
            ui.needs_details.set(needs);
            ui.widget.set(Some(opened.widget));
            ui.session.set_value(Some(session.clone()));
            ui.error.set(None);
            if let Ok(list) = session
                .get::<Vec<VisitorConversation>>("/widget-api/v1/conversations")
                .await
            {
                if let Some(latest) = list.first() {
                    load(ui, latest.id).await;
                }
            }
            if let Some(w) = ui.widget.get_untracked() {
                tell_host(
                    &ui,
                    "ready",
                    &[
                        ("color", w.color.as_str().into()),
                        ("text", text_on(&w.color).into()),
                        ("position", w.position.as_str().into()),
                        ("label", w.launcher_label.as_str().into()),
                    ],
                );
            }
        }
        Err(f) => ui.fail(f),
    }
}

/// Shows a conversation and follows it.
async fn load(ui: Ui, id: Uuid) {
    let Some(session) = ui.session() else { return };
    match session
        .get::<VisitorTranscript>(&format!("/widget-api/v1/conversations/{id}"))
        .await
    {
        Ok(t) => {
            let items: Vec<Item> = t.messages.into_iter().map(|m| ui.item(m)).collect();
            ui.items.set(items);
            ui.status.set(t.conversation.status);
            ui.rating.set(t.conversation.csat);
            ui.conversation.set(Some(id));
            follow(ui, id);
        }
        Err(f) => ui.fail(f),
    }
}

/// Follows the conversation's events until it is no longer the one shown, reconnecting
/// after a network loss from the last message seen.
fn follow(ui: Ui, id: Uuid) {
    ui.stop_following();
    let generation = ui.generation.get_untracked();
    let controller = web_sys::AbortController::new().ok();
    let signal = controller.as_ref().map(web_sys::AbortController::signal);
    ui.abort.set_value(controller);
    spawn_local(async move {
        let mut delay = 500;
        while ui.generation.get_untracked() == generation {
            let Some(session) = ui.session() else { return };
            let after = ui
                .items
                .with_untracked(|items| items.iter().rev().find_map(|i| i.id));
            let path = match after {
                Some(after) => format!("/widget-api/v1/conversations/{id}/events?after={after}"),
                None => format!("/widget-api/v1/conversations/{id}/events"),
            };
            let outcome = session
                .stream("GET", &path, None, signal.as_ref(), |event, data| {
                    if ui.generation.get_untracked() != generation {
                        return;
                    }
                    match event {
                        "message" => {
                            if let Some(m) = json::parse::<VisitorMessage>(data) {
                                ui.arrived(m);
                            }
                        }
                        "status" => {
                            if let Some(c) = json::parse::<VisitorConversation>(data) {
                                ui.status.set(c.status);
                            }
                        }
                        _ => {}
                    }
                })
                .await;
            match outcome {
                Err(Failure::SignedOut) => return,
                // The server ended the stream: follow again soon.
                Ok(()) => {
                    delay = 500;
                    sleep(delay).await;
                }
                // No answer: wait longer each time, up to 10 s.
                Err(_) => {
                    sleep(delay).await;
                    delay = (delay * 2).min(10_000);
                }
            }
        }
    });
}

async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

async fn send(ui: Ui, content: String) {
    let Some(session) = ui.session() else { return };
    ui.error.set(None);
    let id = match ui.conversation.get_untracked() {
        Some(id) => id,
        None => {
            let body = StartVisitorConversation {
                page_url: ui.page_url.get_value(),
            };
            match session
                .post::<_, VisitorConversation>("POST", "/widget-api/v1/conversations", &body)
                .await
            {
                Ok(c) => {
                    ui.conversation.set(Some(c.id));
                    ui.status.set(c.status);
                    follow(ui, c.id);
                    c.id
                }
                Err(f) => return ui.fail(f),
            }
        }
    };
    let answer_key = ui.key();
    let user = Item {
        key: ui.key(),
        id: None,
        role: MessageRole::User,
        text: content.clone(),
        html: None,
        sources: Vec::new(),
        feedback: None,
    };
    let pending = Item {
        key: answer_key,
        role: MessageRole::Assistant,
        text: String::new(),
        html: None,
        ..user.clone()
    };
    let bot_answers = ui.status.get_untracked() == ConversationStatus::Bot;
    ui.items.update(|items| {
        items.push(user);
        if bot_answers {
            items.push(pending);
        }
    });
    ui.busy.set(true);
    let body = json::text(&PostMessage {
        content,
        stream: true,
    })
    .unwrap_or_default();
    let path = format!("/widget-api/v1/conversations/{id}/messages");
    let mut failed = None;
    let outcome = session
        .stream("POST", &path, Some(body), None, |event, data| {
            let edit = |f: &mut dyn FnMut(&mut Item)| {
                ui.items.update(|items| {
                    if let Some(i) = items.iter_mut().find(|i| i.key == answer_key) {
                        f(i);
                    }
                });
            };
            match event {
                "message.delta" => {
                    if let Some(d) = json::parse::<Delta>(data) {
                        edit(&mut |i| i.text.push_str(&d.text));
                    }
                }
                "sources" => {
                    if let Some(s) = json::parse::<Sources>(data) {
                        edit(&mut |i| i.sources = s.sources.clone());
                    }
                }
                "message.done" => {
                    if let Some(d) = json::parse::<Done>(data) {
                        ui.status.set(d.status);
                    }
                }
                "error" => {
                    failed = json::parse::<Problem>(data).map(|e| e.message);
                }
                _ => {}
            }
        })
        .await;
    ui.busy.set(false);
    let failed = match outcome {
        Err(f) => Some(f.text(ui.t)),
        Ok(()) => failed,
    };
    if let Some(why) = failed {
        ui.items
            .update(|items| items.retain(|i| !(i.key == answer_key && i.id.is_none())));
        ui.error.set(Some(why));
    }
    // An answer nobody wrote (a person owns the conversation) leaves no empty bubble.
    ui.items.update(|items| {
        items.retain(|i| !(i.key == answer_key && i.id.is_none() && i.text.is_empty()))
    });
}

async fn rate_answer(ui: Ui, message: Uuid, rating: Rating) {
    let (Some(session), Some(id)) = (ui.session(), ui.conversation.get_untracked()) else {
        return;
    };
    let path = format!("/widget-api/v1/conversations/{id}/messages/{message}/feedback");
    match session
        .post::<_, VisitorMessage>(
            "POST",
            &path,
            &Feedback {
                rating,
                comment: None,
            },
        )
        .await
    {
        Ok(m) => ui.arrived(m),
        Err(f) => ui.fail(f),
    }
}

async fn rate_conversation(ui: Ui, score: u8) {
    let (Some(session), Some(id)) = (ui.session(), ui.conversation.get_untracked()) else {
        return;
    };
    let path = format!("/widget-api/v1/conversations/{id}/rating");
    match session
        .post::<_, VisitorConversation>(
            "POST",
            &path,
            &RateConversation {
                score,
                comment: None,
            },
        )
        .await
    {
        Ok(c) => ui.rating.set(c.csat),
        Err(f) => ui.fail(f),
    }
}

async fn save_details(ui: Ui, name: String, email: String) {
    let Some(session) = ui.session() else { return };
    let body = UpdateVisitor {
        name: Some(name),
        email: Some(email),
    };
    match session
        .post::<_, Visitor>("PATCH", "/widget-api/v1/visitor", &body)
        .await
    {
        Ok(_) => {
            ui.needs_details.set(false);
            ui.error.set(None);
        }
        Err(f) => ui.fail(f),
    }
}

fn focus_input() {
    if let Some(input) = document().get_element_by_id("compose-input") {
        if let Ok(input) = input.dyn_into::<web_sys::HtmlElement>() {
            let _ = input.focus();
        }
    }
}

fn scroll_to_end() {
    if let Some(end) = document().get_element_by_id("log-end") {
        end.scroll_into_view();
    }
}

/// Messages from the loader, from the host page's origin only.
fn listen(ui: Ui) {
    let handler = Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
        if e.origin() != ui.host.get_value() {
            return;
        }
        let data: HostMessage = json::Read::read(e.data()).unwrap_or_default();
        match data.kind.as_deref() {
            Some("init") => {
                ui.page_url.set_value(data.page_url);
                spawn_local(start(ui, data.identity, data.refresh_token));
            }
            Some("open") => focus_input(),
            Some("reset") => {
                if let Some(s) = ui.session() {
                    net::forget(&s.public_id);
                }
                ui.stop_following();
                ui.items.set(Vec::new());
                ui.conversation.set(None);
                spawn_local(start(ui, None, None));
            }
            _ => {}
        }
    });
    window().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    handler.forget();
}

#[component]
fn Line(item: Item, ui: Ui) -> impl IntoView {
    let t = ui.t;
    let who = match item.role {
        MessageRole::User => t.you,
        MessageRole::Assistant => t.assistant,
        MessageRole::Operator => t.team,
    };
    let class = format!("msg {}", item.role_class());
    let pending = item.id.is_none() && item.role != MessageRole::User && item.text.is_empty();
    let body = match (&item.html, pending) {
        (_, true) => {
            view! { <span class="typing" aria-label=t.typing><i></i><i></i><i></i></span> }
                .into_any()
        }
        (Some(html), false) if item.id.is_some() => {
            // Rendered and sanitised on the server (ammonia).
            view! { <div class="body" inner_html=html.clone()></div> }.into_any()
        }
        _ => view! { <div class="body">{item.text.clone()}</div> }.into_any(),
    };
    let sources = (!item.sources.is_empty()).then(|| {
        view! {
            <ul class="sources" aria-label=t.sources>
                {item.sources.iter().map(|s| match &s.url {
                    Some(url) => view! { <li><a href=url.clone() target="_blank" rel="noopener noreferrer">{s.title.clone()}</a></li> }.into_any(),
                    None => view! { <li>{s.title.clone()}</li> }.into_any(),
                }).collect_view()}
            </ul>
        }
    });
    let rating = item.id.filter(|_| item.role == MessageRole::Assistant).map(|id| {
        let up = item.feedback == Some(Rating::Up);
        let down = item.feedback == Some(Rating::Down);
        view! {
            <div class="rate-answer">
                <button type="button" aria-label=t.helpful aria-pressed=up.to_string()
                    on:click=move |_| spawn_local(rate_answer(ui, id, Rating::Up)) title=t.helpful>"▲"</button>
                <button type="button" aria-label=t.not_helpful aria-pressed=down.to_string()
                    on:click=move |_| spawn_local(rate_answer(ui, id, Rating::Down)) title=t.not_helpful>"▼"</button>
            </div>
        }
    });
    view! {
        <li class=class>
            <span class="who">{who}</span>
            {body}
            {sources}
            {rating}
        </li>
    }
}

impl Item {
    fn role_class(&self) -> &'static str {
        match self.role {
            MessageRole::User => "user",
            MessageRole::Assistant => "bot",
            MessageRole::Operator => "operator",
        }
    }
}

#[component]
fn Details(ui: Ui) -> impl IntoView {
    let t = ui.t;
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    view! {
        <form class="details" on:submit=move |e| {
            e.prevent_default();
            spawn_local(save_details(ui, name.get_untracked(), email.get_untracked()));
        }>
            <p>{t.details_intro}</p>
            <label>{t.name}<input required autocomplete="name" bind:value=name/></label>
            <label>{t.email}<input required type="email" autocomplete="email" bind:value=email/></label>
            <button type="submit">{t.start_chatting}</button>
        </form>
    }
}

#[component]
fn Csat(ui: Ui) -> impl IntoView {
    let t = ui.t;
    view! {
        <div class="csat" role="group" aria-label=t.rate_conversation>
            {move || match ui.rating.get() {
                Some(score) => view! { <p>{t.rated}{score}{t.rated_after}</p> }.into_any(),
                None => view! {
                    <p>{t.how_was_it}</p>
                    <div class="stars">
                        {(1..=5u8).map(|s| view! {
                            <button type="button" aria-label=[&s.to_string(), t.of_five].concat()
                                on:click=move |_| spawn_local(rate_conversation(ui, s))>{s}</button>
                        }).collect_view()}
                    </div>
                }.into_any(),
            }}
        </div>
    }
}

#[component]
fn Widget(ui: Ui) -> impl IntoView {
    Effect::new(move |_| {
        if let Some(w) = ui.widget.get() {
            // Through the CSSOM: the frame's CSP allows no style attributes.
            if let Some(root) = document()
                .document_element()
                .and_then(|r| r.dyn_into::<web_sys::HtmlElement>().ok())
            {
                let style = root.style();
                let _ = style.set_property("--accent", &w.color);
                let _ = style.set_property("--on-accent", text_on(&w.color));
            }
        }
    });
    let draft = RwSignal::new(String::new());
    let submit = move || {
        let text = draft.get_untracked().trim().to_string();
        if text.is_empty() || ui.busy.get_untracked() {
            return;
        }
        draft.set(String::new());
        spawn_local(async move {
            send(ui, text).await;
            scroll_to_end();
        });
    };
    Effect::new(move |_| {
        ui.items.track();
        scroll_to_end();
    });
    let widget = move || ui.widget.get();
    let max = move || widget().map_or(2000, |w| w.max_message_length);
    let notice = move || {
        let w = widget()?;
        let t = ui.t;
        match ui.status.get() {
            ConversationStatus::WaitingHuman => Some(t.getting_person.to_string()),
            ConversationStatus::Human => Some(t.person_joined.to_string()),
            _ if !w.open && !w.offline_message.is_empty() => Some(w.offline_message.clone()),
            _ => None,
        }
    };
    let new_conversation = move |_| {
        ui.stop_following();
        ui.items.set(Vec::new());
        ui.conversation.set(None);
        ui.status.set(ConversationStatus::Bot);
        ui.rating.set(None);
        ui.ending.set(false);
        focus_input();
    };
    let t = ui.t;
    view! {
        <header>
            {move || widget().and_then(|w| w.avatar_url).map(|src| view! { <img class="avatar" src=src alt=""/> })}
            <h1>{move || widget().map(|w| w.name).unwrap_or_default()}</h1>
            <button type="button" class="ghost" on:click=new_conversation
                title=t.new_title>{t.new}</button>
            <button type="button" class="ghost" on:click=move |_| ui.ending.update(|e| *e = !*e)
                disabled=move || ui.conversation.get().is_none()
                title=t.rate_conversation>{t.rate}</button>
            <button type="button" class="ghost" aria-label=t.close
                on:click=move |_| tell_host(&ui, "close", &[])>"✕"</button>
        </header>
        {move || notice().map(|n| view! { <p class="notice" role="status">{n}</p> })}
        <ol class="log" aria-live="polite" aria-label=t.conversation>
            {move || widget().filter(|w| !w.greeting.is_empty()).map(|w| view! {
                <li class="msg bot"><span class="who">{t.assistant}</span><div class="body">{w.greeting}</div></li>
            })}
            <For each=move || ui.items.get() key=|i| (i.key, i.id, i.text.len(), i.html.is_some(), i.feedback, i.sources.len())
                children=move |item| view! { <Line item=item ui=ui/> }/>
            <li id="log-end" aria-hidden="true"></li>
        </ol>
        {move || (ui.items.with(Vec::is_empty)).then(|| view! {
            <div class="starters">
                {widget().map(|w| w.starter_prompts).unwrap_or_default().into_iter().map(|p| {
                    let text = p.clone();
                    view! { <button type="button" on:click=move |_| { draft.set(text.clone()); submit(); }>{p}</button> }
                }).collect_view()}
            </div>
        })}
        {move || ui.ending.get().then(|| view! { <Csat ui=ui/> })}
        {move || ui.error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {move || if ui.needs_details.get() {
            view! { <Details ui=ui/> }.into_any()
        } else {
            view! {
                <form class="compose" on:submit=move |e| { e.prevent_default(); submit(); }>
                    <label class="sr" for="compose-input">{t.your_message}</label>
                    <textarea id="compose-input" rows="1" placeholder=t.placeholder
                        maxlength=move || max().to_string()
                        prop:value=move || draft.get()
                        on:input=move |e| draft.set(event_target_value(&e))
                        on:keydown=move |e: web_sys::KeyboardEvent| {
                            if e.key() == "Enter" && !e.shift_key() { e.prevent_default(); submit(); }
                            if e.key() == "Escape" { tell_host(&ui, "close", &[]); }
                        }></textarea>
                    <button type="submit" disabled=move || ui.busy.get() || ui.session.with_value(Option::is_none)>{t.send}</button>
                </form>
            }.into_any()
        }}
    }
}

#[wasm_bindgen(start)]
pub fn main() {
    let ui = Ui {
        items: RwSignal::new(Vec::new()),
        next_key: StoredValue::new(0),
        conversation: RwSignal::new(None),
        status: RwSignal::new(ConversationStatus::Bot),
        widget: RwSignal::new(None),
        t: text::chosen(),
        error: RwSignal::new(None),
        busy: RwSignal::new(false),
        needs_details: RwSignal::new(false),
        rating: RwSignal::new(None),
        ending: RwSignal::new(false),
        generation: RwSignal::new(0),
        abort: StoredValue::new_local(None),
        session: StoredValue::new_local(None),
        host: StoredValue::new(host_origin()),
        page_url: StoredValue::new(None),
    };
    // Mounting starts the executor the effects and tasks below need.
    leptos::mount::mount_to_body(move || view! { <Widget ui=ui/> });
    listen(ui);
    net::keep_with(move |token| tell_host(&ui, "keep", &[("refresh_token", token.into())]));
    if query("preview").is_some() {
        spawn_local(start(ui, None, None));
    } else {
        // The loader answers with `init` (the page's address and any identity).
        tell_host(&ui, "frame", &[]);
    }
}
