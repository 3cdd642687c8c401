//! Knowledge: knowledge bases to create, pick and delete; documents to upload (drag and drop,
//! one request per file with its own progress bar) and follow through ingestion; and a panel
//! to try retrieval and see why each chunk ranked where it did.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;
use serde::Deserialize;
use uuid::Uuid;

use super::widgets::{can_write, fmt_time, show_error, use_me, ActionMessage, ReadOnlyNote};
use crate::api::{
    list_documents, list_knowledge_bases, DeleteDocument, DeleteKnowledgeBase, NewKnowledgeBase,
    SearchKnowledge, SetKnowledgeBaseVisibility,
};
use crate::error::{AppError, FieldError};
use crate::types::{
    Area, Document, DocumentStatus, KnowledgeBase, KnowledgeBaseStatus, LegScore, Page, QueryCut,
    SearchHit, SearchMode, SearchResponse, Visibility, MAX_FULLTEXT_WORDS, MAX_QUERY_CHARS,
};

type KnowledgeBases = Resource<Result<Vec<KnowledgeBase>, AppError>>;
type Documents = Resource<Result<Page<Document>, AppError>>;

/// How often the page refreshes while documents are being ingested.
const POLL: Duration = Duration::from_millis(2500);

/// The page's address with `kb` selected.
fn kb_href(id: Uuid) -> String {
    format!("/knowledge?kb={id}")
}

fn quiet(replace: bool) -> NavigateOptions {
    NavigateOptions {
        replace,
        scroll: false,
        ..Default::default()
    }
}

fn pending(status: DocumentStatus) -> bool {
    matches!(status, DocumentStatus::Queued | DocumentStatus::Processing)
}

#[component]
pub fn KnowledgePage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Knowledge);
    let create = ServerAction::<NewKnowledgeBase>::new();
    let delete = ServerAction::<DeleteKnowledgeBase>::new();
    // Bumped by polling, uploads and deletions: everything showing counts reloads.
    let tick = RwSignal::new(0u32);
    let kbs: KnowledgeBases = Resource::new(
        move || (tick.get(), create.version().get(), delete.version().get()),
        |_| list_knowledge_bases(),
    );
    // The knowledge base worked on: `?kb=` in the address, so links and reloads keep it.
    let query = use_query_map();
    let selected = Memo::new(move |_| {
        query
            .with(|q| q.get("kb"))
            .and_then(|id| Uuid::parse_str(&id).ok())
    });
    let navigate = use_navigate();
    // Browser only: open the first knowledge base when none is chosen (once, on arrival)…
    let arrived = StoredValue::new(false);
    let go = navigate.clone();
    Effect::new(move |_| {
        if arrived.get_value() {
            return;
        }
        if let Some(Ok(list)) = kbs.get() {
            arrived.set_value(true);
            if let (None, Some(first)) = (selected.get_untracked(), list.first()) {
                go(&kb_href(first.id), quiet(true));
            }
        }
    });
    // …a new one once created, and none once the selected one is deleted.
    let go = navigate.clone();
    Effect::new(move |_| {
        if let Some(Ok(kb)) = create.value().get() {
            go(&kb_href(kb.id), quiet(false));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(())) = delete.value().get() {
            navigate("/knowledge", quiet(true));
        }
    });
    view! {
        <Title text="Knowledge"/>
        <h1>"Knowledge"</h1>
        <p class="muted">
            "Documents your agents can search. Uploaded files are split into chunks, embedded "
            "and indexed for both meaning (vectors) and words (full text)."
        </p>
        <ReadOnlyNote area=Area::Knowledge/>
        <ActionMessage value=delete.value() ok="Knowledge base deleted."/>
        <div class="kb-layout">
            <aside class="kb-side" aria-labelledby="kb-list-title">
                <h2 id="kb-list-title">"Knowledge bases"</h2>
                <Transition fallback=|| view! { <p>"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match kbs.await {
                            Ok(list) if list.is_empty() => {
                                view! {
                                    <p class="empty">
                                        "No knowledge bases yet — create one to upload documents"
                                    </p>
                                }
                                    .into_any()
                            }
                            Ok(list) => view! { <KnowledgeBaseList list selected/> }.into_any(),
                            Err(e) => show_error(&e),
                        }
                    })}
                </Transition>
                <Show when=move || writable.get()>
                    <CreateForm create/>
                </Show>
            </aside>
            <section class="kb-main" aria-label="Selected knowledge base">
                {move || match selected.get() {
                    Some(id) => view! { <KnowledgeBasePanel id kbs tick writable delete/> }.into_any(),
                    None => {
                        view! {
                            <p class="empty">
                                "Choose a knowledge base to upload documents and try searches."
                            </p>
                        }
                            .into_any()
                    }
                }}
            </section>
        </div>
    }
}

#[component]
fn KnowledgeBaseList(list: Vec<KnowledgeBase>, selected: Memo<Option<Uuid>>) -> impl IntoView {
    view! {
        <ul class="kb-list">
            {list
                .into_iter()
                .map(|kb| {
                    let id = kb.id;
                    let current = move || selected.get() == Some(id);
                    view! {
                        <li>
                            <a
                                href=kb_href(id)
                                class:selected=current
                                aria-current=move || current().then_some("true")
                            >
                                <span class="kb-name">{kb.name.clone()}</span>
                                <span class="kb-meta">
                                    {kb_status(kb.status)}
                                    {visibility_badge(kb.visibility)}
                                    <span>{count(kb.document_count, "document", "documents")}</span>
                                    <span>{count(kb.chunk_count, "chunk", "chunks")}</span>
                                </span>
                                <code class="small">{kb.embedding_model.clone()}</code>
                            </a>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn visibility_badge(visibility: Visibility) -> impl IntoView {
    let (class, label, title) = match visibility {
        Visibility::Agents => ("badge", "agents", "The agents answer customers from it"),
        Visibility::Internal => (
            "badge internal",
            "internal",
            "Only people and keys with knowledge:read; the agents never see it",
        ),
    };
    view! { <span class=class title=title>{label}</span> }
}

fn kb_status(status: KnowledgeBaseStatus) -> impl IntoView {
    let (class, label) = match status {
        KnowledgeBaseStatus::Ready => ("badge status-ready", "ready"),
        KnowledgeBaseStatus::Indexing => ("badge status-indexing", "indexing"),
    };
    view! { <span class=class>{label}</span> }
}

#[component]
fn CreateForm(create: ServerAction<NewKnowledgeBase>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let for_agents = RwSignal::new(true);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let description = description.get_untracked().trim().to_string();
        create.dispatch(NewKnowledgeBase {
            name: name.get_untracked().trim().to_string(),
            description: (!description.is_empty()).then_some(description),
            visibility: if for_agents.get_untracked() {
                Visibility::Agents
            } else {
                Visibility::Internal
            },
        });
    };
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            name.set(String::new());
            description.set(String::new());
        }
    });
    view! {
        <form class="card stack" on:submit=submit aria-labelledby="new-kb">
            <h3 id="new-kb">"New knowledge base"</h3>
            <label for="kb-name">"Name"</label>
            <input
                id="kb-name"
                type="text"
                required
                maxlength="100"
                placeholder="e.g. Support articles"
                bind:value=name
            />
            <label for="kb-description">"Description (optional)"</label>
            <textarea id="kb-description" rows="2" maxlength="2000" bind:value=description></textarea>
            <label class="check">
                <input type="checkbox" bind:checked=for_agents/>
                "The agents may answer customers from it (otherwise internal)"
            </label>
            <button type="submit" disabled=move || create.pending().get()>"Create"</button>
            {move || match create.value().get() {
                Some(Ok(kb)) => view! {
                    <p class="notice ok" role="status">{format!("Created “{}”.", kb.name)}</p>
                }
                    .into_any(),
                Some(Err(e)) => show_error(&e),
                None => ().into_any(),
            }}
        </form>
    }
}

/// One knowledge base: its summary, uploads, documents and the retrieval test.
#[component]
fn KnowledgeBasePanel(
    id: Uuid,
    kbs: KnowledgeBases,
    tick: RwSignal<u32>,
    writable: Signal<bool>,
    delete: ServerAction<DeleteKnowledgeBase>,
) -> impl IntoView {
    let delete_doc = ServerAction::<DeleteDocument>::new();
    // Pages of documents loaded so far ("Load more" adds one; polling reloads them all).
    let pages = RwSignal::new(1usize);
    let docs: Documents = Resource::new(
        move || (pages.get(), tick.get(), delete_doc.version().get()),
        move |(pages, _, _)| load_documents(id, pages),
    );
    let uploads = RwSignal::new(Vec::<UploadRow>::new());
    let confirm_doc = RwSignal::new(None::<Uuid>);
    // Kept here: the summary is redrawn on every poll.
    let confirm_delete = RwSignal::new(false);
    // Poll while anything is being ingested; stop once everything is ready or failed. Worked
    // out in an effect: resources are read only in effects or under a Suspense (hydration).
    let busy = RwSignal::new(false);
    Effect::new(move |_| {
        let docs_pending = docs
            .get()
            .and_then(Result::ok)
            .is_some_and(|page| page.items.iter().any(|d| pending(d.status)));
        let kb_indexing = kbs.get().and_then(Result::ok).is_some_and(|list| {
            list.iter()
                .any(|kb| kb.id == id && kb.status == KnowledgeBaseStatus::Indexing)
        });
        let now = docs_pending || kb_indexing;
        if busy.get_untracked() != now {
            busy.set(now);
        }
    });
    Effect::new(move |_| {
        if busy.get() {
            if let Ok(handle) =
                set_interval_with_handle(move || tick.update(|t| *t = t.wrapping_add(1)), POLL)
            {
                on_cleanup(move || handle.clear());
            }
        }
    });
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match kbs.await {
                    Ok(list) => match list.into_iter().find(|kb| kb.id == id) {
                        Some(kb) => {
                            view! { <Summary kb writable delete confirming=confirm_delete/> }
                                .into_any()
                        }
                        None => view! {
                            <p class="notice error" role="alert">
                                "This knowledge base does not exist (any more)."
                            </p>
                        }
                            .into_any(),
                    },
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <Show when=move || writable.get()>
            <UploadZone kb=id uploads tick docs/>
        </Show>
        <h3>"Documents"</h3>
        <ActionMessage value=delete_doc.value() ok="Document deleted."/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match docs.await {
                    Ok(page) if page.items.is_empty() => {
                        view! { <p class="empty">"No documents yet."</p> }.into_any()
                    }
                    Ok(page) => {
                        let more = page.next_cursor.is_some();
                        view! {
                            <DocumentTable
                                items=page.items
                                kb=id
                                delete=delete_doc
                                confirm=confirm_doc
                                writable
                            />
                            {more.then(|| view! {
                                <div class="pager">
                                    <button
                                        class="secondary"
                                        on:click=move |_| pages.update(|n| *n += 1)
                                    >
                                        "Load more"
                                    </button>
                                </div>
                            })}
                        }
                            .into_any()
                    }
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <SearchPanel kb=id kbs/>
    }
}

/// The first `pages` pages of a knowledge base's documents, as one page.
async fn load_documents(kb: Uuid, pages: usize) -> Result<Page<Document>, AppError> {
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..pages.max(1) {
        let page = list_documents(kb, cursor).await?;
        items.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(Page {
        items,
        next_cursor: cursor,
    })
}

#[component]
fn Summary(
    kb: KnowledgeBase,
    writable: Signal<bool>,
    delete: ServerAction<DeleteKnowledgeBase>,
    confirming: RwSignal<bool>,
) -> impl IntoView {
    let id = kb.id;
    let set_visibility = ServerAction::<SetKnowledgeBaseVisibility>::new();
    let visibility = RwSignal::new(kb.visibility);
    Effect::new(move |_| {
        if let Some(Ok(saved)) = set_visibility.value().get() {
            visibility.set(saved.visibility);
        }
    });
    let question = format!(
        "Delete “{}” with its {} and their index? This cannot be undone.",
        kb.name,
        count(kb.document_count, "document", "documents")
    );
    let settings = format!(
        "{} ({} dimensions) · chunks of {} tokens, {} shared{}",
        kb.embedding_model,
        kb.embedding_dim,
        kb.chunk_size,
        kb.chunk_overlap,
        kb.parent_chunk_size
            .map(|p| format!(" · returns parent sections of {p} tokens"))
            .unwrap_or_default()
    );
    view! {
        <div class="kb-summary">
            <h2>{kb.name.clone()}</h2>
            {(!kb.description.is_empty()).then(|| view! { <p>{kb.description.clone()}</p> })}
            <p class="kb-meta">
                {kb_status(kb.status)}
                {move || visibility_badge(visibility.get())}
                <span>{count(kb.document_count, "document", "documents")}</span>
                <span>{count(kb.chunk_count, "chunk", "chunks")}</span>
                <span>{format!("updated {}", fmt_time(&kb.updated_at))}</span>
            </p>
            <p class="small muted">{settings}</p>
            <Show when=move || writable.get()>
                <button
                    class="secondary"
                    disabled=move || set_visibility.pending().get()
                    on:click=move |_| {
                        let next = match visibility.get_untracked() {
                            Visibility::Agents => Visibility::Internal,
                            Visibility::Internal => Visibility::Agents,
                        };
                        set_visibility.dispatch(SetKnowledgeBaseVisibility { id, visibility: next });
                    }
                >
                    {move || match visibility.get() {
                        Visibility::Agents => "Make internal (agents stop using it)",
                        Visibility::Internal => "Let the agents answer from it",
                    }}
                </button>
            </Show>
            <ActionMessage value=set_visibility.value() ok="Visibility saved."/>
            {move || {
                if confirming.get() {
                    view! {
                        <div class="notice confirm" role="group" aria-label="Confirm deletion">
                            <span>{question.clone()}</span>
                            <button
                                class="danger"
                                disabled=move || delete.pending().get()
                                on:click=move |_| {
                                    delete.dispatch(DeleteKnowledgeBase { id });
                                    confirming.set(false);
                                }
                            >
                                "Delete"
                            </button>
                            <button class="secondary" on:click=move |_| confirming.set(false)>
                                "Cancel"
                            </button>
                        </div>
                    }
                        .into_any()
                } else {
                    view! {
                        <button
                            class="danger"
                            disabled=move || !writable.get()
                            on:click=move |_| confirming.set(true)
                        >
                            "Delete knowledge base…"
                        </button>
                    }
                        .into_any()
                }
            }}
        </div>
    }
}

// ---- Uploads ----

/// Where one file's upload stands.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
enum UploadState {
    /// Bytes are on their way.
    Sending,
    /// Stored and queued: the documents made of it.
    Accepted(Vec<Uuid>),
    /// The server's (or the network's) reason.
    Refused(String),
}

/// One file being uploaded (browser only; reference-counted signals so the request's
/// callbacks can update it whatever happens to the page meanwhile).
#[derive(Clone)]
struct UploadRow {
    key: u64,
    name: String,
    size: f64,
    sent: ArcRwSignal<f64>,
    total: ArcRwSignal<f64>,
    state: ArcRwSignal<UploadState>,
}

impl UploadRow {
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn new(key: u64, name: String, size: f64) -> Self {
        UploadRow {
            key,
            name,
            size,
            sent: ArcRwSignal::new(0.0),
            total: ArcRwSignal::new(size),
            state: ArcRwSignal::new(UploadState::Sending),
        }
    }
}

/// A problem+json body, as far as a person needs it.
#[derive(Deserialize)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Problem {
    #[serde(default)]
    detail: String,
    #[serde(default)]
    errors: Vec<FieldError>,
}

/// What an upload's response means: its status (0 when it never got one) and body.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn upload_outcome(status: u16, body: &str) -> UploadState {
    if (200..300).contains(&status) {
        let docs: Vec<Document> = serde_json::from_str(body).unwrap_or_default();
        return UploadState::Accepted(docs.into_iter().map(|d| d.id).collect());
    }
    if status == 0 {
        return UploadState::Refused(
            "The upload did not reach the server (network error or cancelled).".into(),
        );
    }
    let message = match serde_json::from_str::<Problem>(body) {
        Ok(p) if !p.errors.is_empty() => p
            .errors
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        Ok(p) if !p.detail.is_empty() => p.detail,
        _ => format!("The server refused the file (HTTP {status})."),
    };
    UploadState::Refused(message)
}

#[component]
fn UploadZone(
    kb: Uuid,
    uploads: RwSignal<Vec<UploadRow>>,
    tick: RwSignal<u32>,
    docs: Documents,
) -> impl IntoView {
    let over = RwSignal::new(false);
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        if let Some(files) = ev.data_transfer().and_then(|dt| dt.files()) {
            browser::upload_files(kb, &files, uploads, tick);
        }
        over.set(false);
    };
    let on_dragover = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        if let Some(dt) = ev.data_transfer() {
            dt.set_drop_effect("copy");
        }
        over.set(true);
    };
    let on_pick = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            let input: web_sys::HtmlInputElement = event_target(&ev);
            if let Some(files) = input.files() {
                browser::upload_files(kb, &files, uploads, tick);
            }
            // Choosing the same file again is a new upload.
            input.set_value("");
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&ev, kb, tick);
    };
    let finished = move || {
        uploads.with(|rows| {
            rows.iter()
                .any(|r| r.state.with(|s| *s != UploadState::Sending))
        })
    };
    view! {
        <div
            class="dropzone"
            class:dragging=move || over.get()
            on:dragenter=move |ev: leptos::ev::DragEvent| {
                ev.prevent_default();
                over.set(true);
            }
            on:dragover=on_dragover
            on:dragleave=move |_| over.set(false)
            on:drop=on_drop
        >
            <p>
                <strong>"Drop files here"</strong>
                " or "
                <label for="kb-files">"choose them"</label>
                ": text, Markdown, HTML, PDF, Word (.docx), CSV or JSON."
            </p>
            <input
                id="kb-files"
                type="file"
                multiple
                accept=".txt,.text,.log,.md,.markdown,.html,.htm,.pdf,.docx,.csv,.json,.jsonl,.ndjson"
                on:change=on_pick
            />
            <p class="small muted">
                "A file named like an existing document replaces it."
            </p>
        </div>
        <Show when=move || uploads.with(|rows| !rows.is_empty())>
            <ul class="uploads" aria-label="Uploads">
                <For
                    each=move || uploads.get()
                    key=|row| row.key
                    children=move |row| view! { <UploadItem row docs/> }
                />
            </ul>
            <Show when=finished>
                <button
                    class="secondary"
                    on:click=move |_| {
                        uploads.update(|rows| {
                            rows.retain(|r| r.state.with_untracked(|s| *s == UploadState::Sending))
                        })
                    }
                >
                    "Clear finished uploads"
                </button>
            </Show>
        </Show>
    }
}

#[component]
fn UploadItem(row: UploadRow, docs: Documents) -> impl IntoView {
    let UploadRow {
        name,
        size,
        sent,
        total,
        state,
        ..
    } = row;
    let label = format!("Uploading {name}");
    view! {
        <li class="upload">
            <span class="upload-name">{name}</span>
            <span class="small muted">{fmt_size(size as u64)}</span>
            {move || match state.get() {
                UploadState::Sending => {
                    let (sent, total) = (sent.get(), total.get());
                    let percent = if total > 0.0 { (sent / total * 100.0).round() } else { 0.0 };
                    view! {
                        <progress max=total.to_string() value=sent.to_string() aria-label=label.clone()>
                            {format!("{percent} %")}
                        </progress>
                        <span class="small">
                            {format!("{percent} % of {} sent", fmt_size(total as u64))}
                        </span>
                    }
                        .into_any()
                }
                UploadState::Accepted(ids) => {
                    // Ingestion, as the polled document list sees it.
                    let doc = docs
                        .get()
                        .and_then(Result::ok)
                        .and_then(|page| page.items.into_iter().find(|d| ids.contains(&d.id)));
                    match doc {
                        Some(doc) => view! {
                            <span class="small">"Uploaded ·"</span>
                            {document_status(doc.status, doc.progress)}
                            {doc.error.map(|e| view! { <span class="error-text small">{e}</span> })}
                        }
                            .into_any(),
                        None => view! { <span class="small">"Uploaded; queued for ingestion."</span> }
                            .into_any(),
                    }
                }
                UploadState::Refused(message) => view! {
                    <span class="notice error" role="alert">{message}</span>
                }
                    .into_any(),
            }}
        </li>
    }
}

/// Browser-only upload plumbing: `XMLHttpRequest` gives upload progress events, `fetch` doesn't.
#[cfg(feature = "hydrate")]
mod browser {
    use std::sync::atomic::{AtomicU64, Ordering};

    use leptos::prelude::*;
    use leptos::wasm_bindgen::{closure::Closure, JsCast, JsValue};
    use uuid::Uuid;
    use web_sys::{File, FileList, FormData, ProgressEvent, XmlHttpRequest};

    use super::{upload_outcome, UploadRow, UploadState};

    static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

    /// Sends each file as its own request, with its own row for progress and outcome.
    pub fn upload_files(
        kb: Uuid,
        files: &FileList,
        uploads: RwSignal<Vec<UploadRow>>,
        tick: RwSignal<u32>,
    ) {
        for file in (0..files.length()).filter_map(|i| files.get(i)) {
            let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
            let row = UploadRow::new(key, file.name(), file.size());
            uploads.update(|rows| rows.push(row.clone()));
            if let Err(e) = send(kb, &file, row.clone(), tick) {
                let reason = e.as_string().unwrap_or_else(|| format!("{e:?}"));
                row.state.set(UploadState::Refused(format!(
                    "The upload could not start: {reason}"
                )));
            }
        }
    }

    /// `POST /console/knowledge-bases/{kb}/documents` with the file as `files` (the session
    /// cookie authenticates); 202 with the documents, or problem+json.
    fn send(kb: Uuid, file: &File, row: UploadRow, tick: RwSignal<u32>) -> Result<(), JsValue> {
        let form = FormData::new()?;
        form.append_with_blob_and_filename("files", file, &file.name())?;
        let xhr = XmlHttpRequest::new()?;
        xhr.open("POST", &format!("/console/knowledge-bases/{kb}/documents"))?;
        xhr.set_request_header("Accept", "application/json")?;
        let upload = xhr.upload()?;
        let (sent, total) = (row.sent.clone(), row.total.clone());
        let progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |ev: ProgressEvent| {
            if ev.length_computable() {
                total.set(ev.total());
            }
            sent.set(ev.loaded());
        });
        upload.set_onprogress(Some(progress.as_ref().unchecked_ref()));
        let request = xhr.clone();
        // `loadend` comes exactly once, after success, error or abort; the progress
        // callback is released with it.
        let finished = Closure::<dyn FnMut()>::once_into_js(move || {
            upload.set_onprogress(None);
            drop(progress);
            let status = request.status().unwrap_or(0);
            let body = request.response_text().ok().flatten().unwrap_or_default();
            row.state.set(upload_outcome(status, &body));
            tick.update(|t| *t = t.wrapping_add(1));
        });
        xhr.set_onloadend(Some(finished.unchecked_ref()));
        xhr.send_with_opt_form_data(Some(&form))
    }
}

// ---- Documents ----

fn document_status(status: DocumentStatus, progress: u8) -> AnyView {
    let badge = view! {
        <span class=format!("badge status-{}", status.as_str())>{status.as_str()}</span>
    };
    match status {
        DocumentStatus::Queued => view! {
            {badge}
            <progress aria-label="Waiting for ingestion">"waiting"</progress>
        }
        .into_any(),
        DocumentStatus::Processing => view! {
            {badge}
            <progress max="100" value=progress.to_string() aria-label="Ingestion progress">
                {format!("{progress} %")}
            </progress>
            <span class="small">{format!("{progress} %")}</span>
        }
        .into_any(),
        DocumentStatus::Ready | DocumentStatus::Failed => badge.into_any(),
    }
}

fn fmt_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[component]
fn DocumentTable(
    items: Vec<Document>,
    kb: Uuid,
    delete: ServerAction<DeleteDocument>,
    confirm: RwSignal<Option<Uuid>>,
    writable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Title"</th>
                        <th scope="col">"Format"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Chunks"</th>
                        <th scope="col">"Size"</th>
                        <th scope="col">"Added"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|doc| {
                            let id = doc.id;
                            let title = doc.title.clone();
                            view! {
                                <tr>
                                    <td>
                                        <span class="doc-title">{doc.title.clone()}</span>
                                        {(doc.source != doc.title)
                                            .then(|| view! { <span class="small muted doc-source">{doc.source.clone()}</span> })}
                                    </td>
                                    <td><code>{doc.format.clone()}</code></td>
                                    <td class="doc-status">
                                        {document_status(doc.status, doc.progress)}
                                        {doc.error.clone().map(|e| view! { <p class="error-text small">{e}</p> })}
                                    </td>
                                    <td>{doc.chunk_count}</td>
                                    <td>{fmt_size(doc.size_bytes)}</td>
                                    <td>{fmt_time(&doc.created_at)}</td>
                                    <td class="actions">
                                        {move || {
                                            if confirm.get() == Some(id) {
                                                view! {
                                                    <span class="confirm">
                                                        <button
                                                            class="danger"
                                                            aria-label=format!("Really delete {title}")
                                                            on:click=move |_| {
                                                                delete.dispatch(DeleteDocument { kb, id });
                                                                confirm.set(None);
                                                            }
                                                        >
                                                            "Really delete"
                                                        </button>
                                                        <button
                                                            class="secondary"
                                                            on:click=move |_| confirm.set(None)
                                                        >
                                                            "Cancel"
                                                        </button>
                                                    </span>
                                                }
                                                    .into_any()
                                            } else {
                                                view! {
                                                    <button
                                                        class="danger"
                                                        disabled=move || !writable.get()
                                                        aria-label=format!("Delete {title}")
                                                        on:click=move |_| confirm.set(Some(id))
                                                    >
                                                        "Delete"
                                                    </button>
                                                }
                                                    .into_any()
                                            }
                                        }}
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

// ---- Retrieval test ----

#[component]
fn SearchPanel(kb: Uuid, kbs: KnowledgeBases) -> impl IntoView {
    let search = ServerAction::<SearchKnowledge>::new();
    let query = RwSignal::new(String::new());
    let mode = RwSignal::new(SearchMode::Hybrid.as_str().to_string());
    let top_k = RwSignal::new("8".to_string());
    let rrf_k = RwSignal::new("60".to_string());
    let adaptive = RwSignal::new(false);
    let searched = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    // Start from the knowledge base's own defaults, once they are known (browser only).
    let seeded = StoredValue::new(false);
    Effect::new(move |_| {
        if seeded.get_value() {
            return;
        }
        if let Some(Ok(list)) = kbs.get() {
            seeded.set_value(true);
            if let Some(d) = list.iter().find(|k| k.id == kb).map(|k| &k.search_defaults) {
                mode.set(d.mode.as_str().to_string());
                top_k.set(d.top_k.to_string());
                rrf_k.set(d.rrf_k.to_string());
                adaptive.set(d.adaptive);
            }
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Ok(top), Ok(rrf)) = (
            top_k.get_untracked().trim().parse::<u32>(),
            rrf_k.get_untracked().trim().parse::<u32>(),
        ) else {
            problem.set(Some("top_k and rrf_k must be whole numbers.".into()));
            return;
        };
        problem.set(None);
        let text = query.get_untracked().trim().to_string();
        searched.set(text.clone());
        search.dispatch(SearchKnowledge {
            kb,
            query: text,
            mode: mode.get_untracked(),
            top_k: top,
            rrf_k: rrf,
            adaptive: adaptive.get_untracked(),
        });
    };
    view! {
        <section class="card" aria-labelledby="retrieval-test">
            <h3 id="retrieval-test">"Retrieval test"</h3>
            <p class="small muted">
                "Ask what an agent would ask and see which chunks come back, and why: each leg's "
                "rank and score, and the fused score."
            </p>
            <form class="filters" on:submit=submit aria-label="Search this knowledge base">
                <label class="grow">
                    "Query"
                    <input type="search" required maxlength=MAX_QUERY_CHARS bind:value=query/>
                </label>
                <label>
                    "Mode"
                    <select
                        on:change=move |ev| mode.set(event_target_value(&ev))
                        prop:value=move || mode.get()
                    >
                        {[
                            (SearchMode::Hybrid, "hybrid"),
                            (SearchMode::Vector, "vector"),
                            (SearchMode::Fulltext, "full text"),
                        ]
                            .into_iter()
                            .map(|(m, label)| view! { <option value=m.as_str()>{label}</option> })
                            .collect_view()}
                    </select>
                </label>
                <label>
                    "top_k"
                    <input type="number" min="1" max="200" bind:value=top_k/>
                </label>
                <label>
                    "rrf_k"
                    <input type="number" min="1" max="1000" bind:value=rrf_k/>
                </label>
                <label class="check">
                    <input type="checkbox" bind:checked=adaptive/>
                    "adaptive"
                </label>
                <button type="submit" disabled=move || search.pending().get()>"Search"</button>
            </form>
            {move || problem.get().map(|p| view! { <p class="notice error" role="alert">{p}</p> })}
            {move || match search.value().get() {
                Some(Ok(response)) => {
                    view! { <SearchResults response query=searched.get_untracked()/> }.into_any()
                }
                Some(Err(e)) => show_error(&e),
                None => ().into_any(),
            }}
        </section>
    }
}

fn leg(score: Option<LegScore>) -> String {
    score.map_or_else(
        || "—".to_string(),
        |l| format!("#{} · {:.4}", l.rank, l.score),
    )
}

/// What a long query lost, in words.
fn cut_note(cut: &QueryCut) -> String {
    let mut parts = Vec::new();
    if let Some(read) = cut.embedded_chars {
        parts.push(format!(
            "the vector search read its first {read} of {} characters",
            cut.query_chars
        ));
    }
    if let Some(dropped) = cut.dropped_words {
        parts.push(format!(
            "the full-text search matched its first {MAX_FULLTEXT_WORDS} distinct words and left out {dropped}"
        ));
    }
    format!("A long query: {}.", parts.join("; "))
}

#[component]
fn SearchResults(response: SearchResponse, query: String) -> impl IntoView {
    let terms = query_terms(&query);
    let n = response.hits.len();
    let summary = format!(
        "{n} {} in {} ms · {}{}",
        if n == 1 { "chunk" } else { "chunks" },
        response.took_ms,
        response.mode.as_str(),
        response
            .weights
            .map(|(v, f)| format!(" · weights: vector {v:.2}, full text {f:.2}"))
            .unwrap_or_default()
    );
    view! {
        <p class="search-summary" role="status">
            {summary}
            {response.cached.then(|| view! { " " <span class="badge">"cached"</span> })}
            {response.reranked.then(|| view! { " " <span class="badge">"reranked"</span> })}
        </p>
        {response.cut.map(|cut| view! { <p class="small muted">{cut_note(&cut)}</p> })}
        {if response.hits.is_empty() {
            view! { <p class="empty">"No chunks matched."</p> }.into_any()
        } else {
            view! {
                <div class="table-wrap">
                    <table class="hits">
                        <thead>
                            <tr>
                                <th scope="col">"#"</th>
                                <th scope="col">"Document · chunk"</th>
                                <th scope="col">"Score"</th>
                                <th scope="col">"Vector (rank · cosine)"</th>
                                <th scope="col">"Full text (rank · BM25)"</th>
                            </tr>
                        </thead>
                        {response
                            .hits
                            .into_iter()
                            .enumerate()
                            .map(|(i, hit)| view! { <HitRows rank={i + 1} hit terms=terms.clone()/> })
                            .collect_view()}
                    </table>
                </div>
            }
                .into_any()
        }}
    }
}

#[component]
fn HitRows(rank: usize, hit: SearchHit, terms: Vec<String>) -> impl IntoView {
    let context = hit.context.clone().map(|c| {
        let terms = terms.clone();
        view! {
            <details>
                <summary>"Parent section"</summary>
                <p class="chunk"><Highlighted text=c terms/></p>
            </details>
        }
    });
    view! {
        <tbody class="hit">
            <tr>
                <td>{rank}</td>
                <td>
                    <strong>{hit.document_title.clone()}</strong>
                    " "
                    <span class="small muted">{format!("chunk {}", hit.chunk_index)}</span>
                </td>
                <td>
                    <code>{format!("{:.4}", hit.score)}</code>
                    {hit.rerank_score.map(|r| view! {
                        <span class="small muted">{format!(" (rerank {r:.4})")}</span>
                    })}
                </td>
                <td>{leg(hit.vector)}</td>
                <td>{leg(hit.fulltext)}</td>
            </tr>
            <tr class="hit-text">
                <td colspan="5">
                    <p class="chunk"><Highlighted text=hit.text terms/></p>
                    {context}
                </td>
            </tr>
        </tbody>
    }
}

/// `text` with the query's words in `<mark>`; every piece stays escaped text.
#[component]
fn Highlighted(text: String, terms: Vec<String>) -> impl IntoView {
    highlight_segments(&text, &terms)
        .into_iter()
        .map(|(piece, marked)| {
            if marked {
                view! { <mark>{piece}</mark> }.into_any()
            } else {
                piece.into_any()
            }
        })
        .collect_view()
}

/// The query's words worth marking: longer than two characters, lower-cased, each once.
fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 2)
        .map(str::to_lowercase)
        .collect();
    terms.sort();
    terms.dedup();
    terms
}

/// Splits `text` into pieces, marked (`true`) where a whole word equals one of `terms`
/// (lower-case) ignoring case. Joined, the pieces are `text`.
fn highlight_segments(text: &str, terms: &[String]) -> Vec<(String, bool)> {
    let mut pieces = Vec::new();
    if terms.is_empty() {
        if !text.is_empty() {
            pieces.push((text.to_string(), false));
        }
        return pieces;
    }
    let mut plain_from = 0;
    let mut word_from = None;
    // A trailing separator closes the last word.
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if c.is_alphanumeric() {
            word_from.get_or_insert(i);
            continue;
        }
        let Some(start) = word_from.take() else {
            continue;
        };
        let word = &text[start..i];
        if terms.iter().any(|t| *t == word.to_lowercase()) {
            if plain_from < start {
                pieces.push((text[plain_from..start].to_string(), false));
            }
            pieces.push((word.to_string(), true));
            plain_from = i;
        }
    }
    if plain_from < text.len() {
        pieces.push((text[plain_from..].to_string(), false));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(text: &str, query: &str) -> Vec<(String, bool)> {
        highlight_segments(text, &query_terms(query))
    }

    #[test]
    fn marks_whole_words_ignoring_case() {
        assert_eq!(
            marked(
                "Refunds take 5 days; see REFUND policy.",
                "refund policy of"
            ),
            vec![
                ("Refunds take 5 days; see ".to_string(), false),
                ("REFUND".to_string(), true),
                (" ".to_string(), false),
                ("policy".to_string(), true),
                (".".to_string(), false),
            ]
        );
    }

    #[test]
    fn short_words_and_parts_of_words_stay_plain() {
        assert_eq!(
            marked("an item in stock", "in an it"),
            vec![("an item in stock".to_string(), false)]
        );
        assert_eq!(
            marked("catalogue cat", "cat"),
            vec![("catalogue ".to_string(), false), ("cat".to_string(), true)]
        );
    }

    #[test]
    fn pieces_join_back_to_the_text_and_keep_markup_as_text() {
        let text = "<b>Größe</b> größe, Straße…";
        let pieces = marked(text, "GRÖSSE größe");
        assert_eq!(
            pieces.iter().map(|p| p.0.as_str()).collect::<String>(),
            text
        );
        assert_eq!(
            pieces
                .iter()
                .filter(|p| p.1)
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>(),
            vec!["Größe", "größe"]
        );
        assert_eq!(marked("", "anything"), Vec::new());
        assert_eq!(marked("text", ""), vec![("text".to_string(), false)]);
    }

    #[test]
    fn upload_outcomes() {
        assert_eq!(upload_outcome(202, "[]"), UploadState::Accepted(vec![]));
        assert_eq!(
            upload_outcome(
                422,
                r#"{"detail":"the request has invalid fields","errors":[{"field":"files[0]","message":"unsupported format"}]}"#
            ),
            UploadState::Refused("files[0]: unsupported format".into())
        );
        assert_eq!(
            upload_outcome(
                403,
                r#"{"detail":"this needs the knowledge:write permission"}"#
            ),
            UploadState::Refused("this needs the knowledge:write permission".into())
        );
        assert_eq!(
            upload_outcome(502, "Bad Gateway"),
            UploadState::Refused("The server refused the file (HTTP 502).".into())
        );
        assert!(matches!(upload_outcome(0, ""), UploadState::Refused(_)));
        assert_eq!(fmt_size(512), "512 B");
        assert_eq!(fmt_size(1536), "1.5 KB");
        assert_eq!(fmt_size(5 * 1024 * 1024), "5.0 MB");
    }
}
