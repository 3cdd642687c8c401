//! Small pieces the pages share.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{Area, CurrentUser};

pub type Me = Resource<Result<CurrentUser, AppError>>;

/// The signed-in user resource the layout provides to every page.
pub fn use_me() -> Me {
    expect_context::<Me>()
}

/// Whether the signed-in user's role may change `area`; false until known.
pub fn can_write(me: Me, area: Area) -> Signal<bool> {
    Signal::derive(move || {
        me.get()
            .and_then(Result::ok)
            .is_some_and(|u| u.can_write(area))
    })
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

/// Shown instead of a write form to members whose role may only read.
#[component]
pub fn ReadOnlyNote(writable: Signal<bool>) -> impl IntoView {
    move || {
        (!writable.get()).then(|| {
            view! {
                <p class="notice" role="note">
                    "Your role can view this page but not change it."
                </p>
            }
        })
    }
}

/// Renders a loaded resource or its error.
pub fn show_error(e: &AppError) -> AnyView {
    view! { <p class="notice error" role="alert">{e.user_message()}</p> }.into_any()
}

pub fn fmt_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
