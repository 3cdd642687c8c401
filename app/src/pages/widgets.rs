//! Small pieces the pages share.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{Area, CurrentUser};

pub type Me = Resource<Result<CurrentUser, AppError>>;

/// The signed-in user resource the layout provides to every page.
pub fn use_me() -> Me {
    expect_context::<Me>()
}

/// Whether the signed-in user's role may change `area`: `None` until known.
///
/// Set by an effect, so it stays `None` while the server renders and while the browser hydrates
/// (both then produce the same HTML) and becomes known once the page is live. Reading the user
/// resource directly, outside a `<Suspense/>`, lets the two renders differ; the hydration then
/// leaves forms without their handlers, which submit natively and lose what was typed.
fn write_access(me: Me, area: Area) -> ReadSignal<Option<bool>> {
    let (access, set_access) = signal(None);
    Effect::new(move |_| {
        set_access.set(me.get().map(|user| user.is_ok_and(|u| u.can_write(area))));
    });
    access
}

/// Whether the signed-in user's role may change `area`; false until known.
pub fn can_write(me: Me, area: Area) -> Signal<bool> {
    let access = write_access(me, area);
    Signal::derive(move || access.get() == Some(true))
}

/// The outcome of the last submitted action: an error, or a confirmation.
#[component]
pub fn ActionMessage<T: Clone + Send + Sync + 'static>(
    #[prop(into)] value: Signal<Option<Result<T, AppError>>>,
    #[prop(into)] ok: String,
) -> impl IntoView {
    move || match value.get() {
        Some(Ok(_)) => view! { <p class="notice ok" role="status">{ok.clone()}</p> }.into_any(),
        Some(Err(e)) => {
            view! { <p class="notice error" role="alert">{e.user_message()}</p> }.into_any()
        }
        None => ().into_any(),
    }
}

/// A "Disconnect" button that asks first: `question` with "Yes, disconnect" and "Keep it".
#[component]
pub fn ConfirmDisconnect(
    question: &'static str,
    writable: Signal<bool>,
    #[prop(into)] pending: Signal<bool>,
    on_confirm: Callback<()>,
) -> impl IntoView {
    let confirming = RwSignal::new(false);
    view! {
        <Show
            when=move || confirming.get()
            fallback=move || view! {
                <button type="button" class="danger"
                    disabled=move || !writable.get()
                    on:click=move |_| confirming.set(true)>"Disconnect"</button>
            }
        >
            <span>{question}</span>
            <button type="button" class="danger"
                disabled=move || pending.get()
                on:click=move |_| {
                    confirming.set(false);
                    on_confirm.run(());
                }>"Yes, disconnect"</button>
            <button type="button" class="secondary"
                on:click=move |_| confirming.set(false)>"Keep it"</button>
        </Show>
    }
}

/// Shown instead of a write form to members whose role may only read `area`.
#[component]
pub fn ReadOnlyNote(area: Area) -> impl IntoView {
    let access = write_access(use_me(), area);
    move || {
        (access.get() == Some(false)).then(|| {
            view! {
                <p class="notice" role="note">
                    "Your role can view this page but not change it."
                </p>
            }
        })
    }
}

/// How many times `action` has succeeded: a resource keyed on it is read again after a
/// successful submission only, so a refused one leaves the form as it was typed.
pub fn successes<S>(action: ServerAction<S>) -> ReadSignal<u32>
where
    S: leptos::server_fn::ServerFn + Clone + Send + Sync + 'static,
    S::Output: Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    let (count, set_count) = signal(0u32);
    Effect::new(move |_| {
        if action.value().with(|v| matches!(v, Some(Ok(_)))) {
            set_count.update(|n| *n += 1);
        }
    });
    count
}

/// The id in the page's `?open=<id>` (a link that opens one item of the page).
pub fn opened_id() -> Option<uuid::Uuid> {
    leptos_router::hooks::use_query_map()
        .with_untracked(|q| q.get("open").and_then(|id| id.parse().ok()))
}

/// Renders a loaded resource or its error.
pub fn show_error(e: &AppError) -> AnyView {
    view! { <p class="notice error" role="alert">{e.user_message()}</p> }.into_any()
}

pub fn fmt_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The non-empty lines of a text field, trimmed.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A number field's value (the saved one when it does not parse; the browser's `min`/`max`
/// and the server's validation take care of the range).
pub fn number(field: RwSignal<String>, saved: u32) -> u32 {
    field.get_untracked().trim().parse().unwrap_or(saved)
}

/// Where a cursor-paged list stands: the cursor of the page shown and those of the pages
/// before it, so "back" returns exactly.
#[derive(Clone, Copy)]
pub struct Cursors {
    pub current: RwSignal<Option<String>>,
    before: RwSignal<Vec<Option<String>>>,
}

impl Default for Cursors {
    fn default() -> Self {
        Self::new()
    }
}

impl Cursors {
    pub fn new() -> Self {
        Cursors {
            current: RwSignal::new(None),
            before: RwSignal::new(Vec::new()),
        }
    }

    /// Back to the first page (the filters changed).
    pub fn reset(&self) {
        self.before.set(Vec::new());
        self.current.set(None);
    }
}

/// Buttons to the page before and the page after (`next` is the page's `next_cursor`).
#[component]
pub fn Pager(
    cursors: Cursors,
    next: Option<String>,
    back: &'static str,
    forward: &'static str,
) -> impl IntoView {
    view! {
        <div class="actions">
            <Show when=move || !cursors.before.with(Vec::is_empty)>
                <button type="button" on:click=move |_| {
                    let previous = cursors.before.write().pop().flatten();
                    cursors.current.set(previous);
                }>{back}</button>
            </Show>
            {next.map(|next| view! {
                <button type="button" on:click=move |_| {
                    cursors.before.write().push(cursors.current.get_untracked());
                    cursors.current.set(Some(next.clone()));
                }>{forward}</button>
            })}
        </div>
    }
}
