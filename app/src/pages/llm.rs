//! The tenant's LLM provider (a panel of the Settings page): which provider answers, its
//! endpoint and models, the stored key's last characters; change them or go back to the
//! platform's provider.

use leptos::prelude::*;

use super::widgets::{can_write, fmt_time, show_error, successes, use_me, ActionMessage};
use crate::api::{get_llm_settings, ResetLlmSettings, SaveLlmSettings};
use crate::types::{Area, LlmSettings, LlmSource, UpdateLlmSettings};

#[component]
pub fn LlmProviderPanel() -> impl IntoView {
    let writable = can_write(use_me(), Area::Tenant);
    let save = ServerAction::<SaveLlmSettings>::new();
    let reset = ServerAction::<ResetLlmSettings>::new();
    // Read again after a successful save only: a refused one keeps the form as typed.
    let saved = successes(save);
    let settings = Resource::new(
        move || (saved.get(), reset.version().get()),
        |_| get_llm_settings(),
    );
    view! {
        <section class="card stack" aria-labelledby="llm-provider">
            <h2 id="llm-provider">"LLM provider"</h2>
            <p class="muted">
                "Your agents answer with the platform's provider unless you set your own
                OpenAI-compatible endpoint (OpenAI, Azure OpenAI, Ollama, vLLM…). The API key is
                stored encrypted and never shown again."
            </p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match settings.await {
                        Ok(current) => view! { <LlmForm current save reset writable/> }.into_any(),
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

fn describe(s: &LlmSettings) -> String {
    match s.source {
        LlmSource::Tenant => "Your own provider".to_string(),
        LlmSource::Platform => "The platform's provider".to_string(),
        LlmSource::Offline => {
            "No provider: answers are quoted from your documents (offline mode)".to_string()
        }
    }
}

#[component]
fn LlmForm(
    current: LlmSettings,
    save: ServerAction<SaveLlmSettings>,
    reset: ServerAction<ResetLlmSettings>,
    writable: Signal<bool>,
) -> impl IntoView {
    let own = current.source == LlmSource::Tenant;
    let base_url = RwSignal::new(current.base_url.clone().unwrap_or_default());
    let chat_model = RwSignal::new(if own {
        current.chat_model.clone().unwrap_or_default()
    } else {
        String::new()
    });
    let router_model = RwSignal::new(if own {
        current.router_model.clone().unwrap_or_default()
    } else {
        String::new()
    });
    let api_key = RwSignal::new(String::new());
    let clear_key = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key = api_key.get_untracked();
        let router = router_model.get_untracked();
        save.dispatch(SaveLlmSettings {
            update: UpdateLlmSettings {
                base_url: base_url.get_untracked().trim().to_string(),
                chat_model: chat_model.get_untracked().trim().to_string(),
                router_model: (!router.trim().is_empty()).then(|| router.trim().to_string()),
                api_key: (!key.is_empty()).then_some(key),
                clear_api_key: clear_key.get_untracked(),
            },
        });
        api_key.set(String::new());
    };
    let key_state = match (&current.api_key_hint, current.api_key_set) {
        (Some(hint), _) => format!("stored, ends in …{hint}"),
        (None, true) => "stored".to_string(),
        (None, false) => "none".to_string(),
    };
    view! {
        <dl class="scope-grid" data-testid="llm-current">
            <dt>"In use"</dt>
            <dd data-testid="llm-source">{describe(&current)}</dd>
            {current.base_url.clone().map(|url| view! { <dt>"Endpoint"</dt><dd><code>{url}</code></dd> })}
            {current.chat_model.clone().map(|m| view! { <dt>"Chat model"</dt><dd><code>{m}</code></dd> })}
            {current.router_model.clone().map(|m| view! { <dt>"Router model"</dt><dd><code>{m}</code></dd> })}
            {own.then(|| view! { <dt>"API key"</dt><dd data-testid="llm-key">{key_state.clone()}</dd> })}
            {current.updated_at.as_ref().map(|t| view! { <dt>"Changed"</dt><dd>{fmt_time(t)}</dd> })}
        </dl>
        <form class="stack" on:submit=submit aria-label="Your own LLM provider">
            <label for="llm-base-url">"Endpoint (base URL)"</label>
            <input id="llm-base-url" type="url" required maxlength="2000"
                placeholder="https://api.openai.com/v1" bind:value=base_url/>
            <label for="llm-chat-model">"Chat model"</label>
            <input id="llm-chat-model" type="text" required maxlength="200"
                placeholder="gpt-4o-mini" bind:value=chat_model/>
            <label for="llm-router-model">"Router model (optional; the chat model otherwise)"</label>
            <input id="llm-router-model" type="text" maxlength="200" bind:value=router_model/>
            <label for="llm-api-key">
                {if current.api_key_set { "New API key (leave empty to keep the stored one)" } else { "API key" }}
            </label>
            <input id="llm-api-key" type="password" autocomplete="off" maxlength="4096" bind:value=api_key/>
            <Show when=move || current.api_key_set>
                <label class="check">
                    <input type="checkbox" bind:checked=clear_key/>
                    "Delete the stored key (for endpoints without a key)"
                </label>
            </Show>
            <div class="confirm">
                <button type="submit" disabled=move || !writable.get() || save.pending().get()>
                    "Save provider"
                </button>
                <button type="button" class="secondary"
                    disabled=move || !writable.get() || !own || reset.pending().get()
                    on:click=move |_| { reset.dispatch(ResetLlmSettings {}); }>
                    "Use the platform default"
                </button>
            </div>
            <ActionMessage value=save.value() ok="Provider saved; it answers from the next message."/>
            <ActionMessage value=reset.value() ok="Back to the platform's provider."/>
        </form>
    }
}
