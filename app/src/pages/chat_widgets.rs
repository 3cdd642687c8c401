//! Chat widgets: create and edit a widget, copy its snippet, rotate its identity secret (shown
//! once), preview the real widget, delete. The same as `/api/v1/widgets`.

use leptos::prelude::*;
use leptos_meta::Title;
use uuid::Uuid;

use super::widgets::{
    can_write, fmt_time, lines, number, show_error, use_me, ActionMessage, ReadOnlyNote,
};
use crate::api::{
    list_agents, list_widgets, CreateWidget, DeleteWidget, RotateWidgetSecret, UpdateWidget,
};
use crate::types::{
    Area, IdentityMode, PrechatForm, Widget, WidgetPosition, WidgetSettings, WidgetWithSecret,
};

#[component]
pub fn ChatWidgetsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Widgets);
    let create = ServerAction::<CreateWidget>::new();
    let update = ServerAction::<UpdateWidget>::new();
    let rotate = ServerAction::<RotateWidgetSecret>::new();
    let delete = ServerAction::<DeleteWidget>::new();
    let editing = RwSignal::new(None::<Uuid>);
    let creating = RwSignal::new(false);
    let widgets = Resource::new(
        move || {
            (
                create.version().get(),
                update.version().get(),
                rotate.version().get(),
                delete.version().get(),
            )
        },
        |_| list_widgets(),
    );
    let agents = Resource::new(|| (), |_| list_agents());
    // The secret, shown once after creating or rotating.
    let secret = Memo::new(move |_| {
        let made = create.value().get().and_then(Result::ok);
        let rotated = rotate.value().get().and_then(Result::ok);
        rotated.or(made)
    });
    Effect::new(move |_| {
        if matches!(create.value().get(), Some(Ok(_))) {
            creating.set(false);
        }
        if matches!(update.value().get(), Some(Ok(_))) {
            editing.set(None);
        }
    });
    view! {
        <Title text="Chat widgets"/>
        <h1>"Chat widgets"</h1>
        <p class="muted">
            "A widget puts your agents on your website: paste its snippet into your pages. It works only on the sites you allow, and can require your site to vouch for each visitor."
        </p>
        <ReadOnlyNote area=Area::Widgets/>
        {move || secret.get().map(|s| view! { <SecretNotice made=s/> })}
        <ActionMessage value=create.value() ok="Widget created."/>
        <ActionMessage value=update.value() ok="Widget saved."/>
        <ActionMessage value=delete.value() ok="Widget deleted."/>
        <Show when=move || writable.get() && !creating.get()>
            <button type="button" on:click=move |_| creating.set(true)>"New widget"</button>
        </Show>
        <Show when=move || creating.get()>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let names = agent_names(agents.await);
                    view! {
                        <section class="card">
                            <h2>"New widget"</h2>
                            <WidgetForm
                                initial=WidgetSettings::default()
                                agents=names
                                label="Create widget"
                                prefix="new-widget".to_string()
                                on_save=Callback::new(move |settings| {
                                    create.dispatch(CreateWidget { settings });
                                })
                                on_cancel=Callback::new(move |()| creating.set(false))
                            />
                        </section>
                    }
                })}
            </Suspense>
        </Show>
        <h2>"Widgets"</h2>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let names = agent_names(agents.await);
                match widgets.await {
                    Ok(list) if list.is_empty() => view! {
                        <p class="empty">"No widgets yet. Create one to chat with visitors on your website."</p>
                    }.into_any(),
                    Ok(list) => list
                        .into_iter()
                        .map(|w| {
                            let names = names.clone();
                            view! { <WidgetCard w agents=names editing writable update rotate delete/> }
                        })
                        .collect_view()
                        .into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

fn agent_names(
    catalogue: Result<crate::types::AgentCatalogue, crate::error::AppError>,
) -> Vec<String> {
    catalogue
        .map(|c| c.agents.into_iter().map(|a| a.name).collect())
        .unwrap_or_default()
}

#[component]
fn SecretNotice(made: WidgetWithSecret) -> impl IntoView {
    view! {
        <div class="notice ok" role="status">
            <p>
                {format!("Identity secret of “{}” — shown only now:", made.widget.settings.name)}
            </p>
            <code class="secret">{made.secret}</code>
            <p class="muted">
                "Your server signs each signed-in visitor's id with it: the hex HMAC-SHA256 of the id (as Chatwoot's identifier_hash). Pass it with "
                <code>"AgentWidget('identify', {id, hash, name, email})"</code> "."
            </p>
        </div>
    }
}

#[component]
fn WidgetCard(
    w: Widget,
    agents: Vec<String>,
    editing: RwSignal<Option<Uuid>>,
    writable: Signal<bool>,
    update: ServerAction<UpdateWidget>,
    rotate: ServerAction<RotateWidgetSecret>,
    delete: ServerAction<DeleteWidget>,
) -> impl IntoView {
    let id = w.id;
    let preview = RwSignal::new(false);
    let settings = w.settings.clone();
    let domains = if settings.allowed_domains.is_empty() {
        "none: works in the preview only".to_string()
    } else {
        settings.allowed_domains.join(", ")
    };
    let identity = match settings.identity {
        IdentityMode::Off => "off",
        IdentityMode::Optional => "optional",
        IdentityMode::Enforced => "enforced",
    };
    let frame = format!("/widget/{}?preview=1", w.public_id);
    let snippet_id = format!("snippet-{}", w.public_id);
    let initial = settings.clone();
    view! {
        <section class="card stack widget-card">
            <h3>{settings.name.clone()}</h3>
            <dl class="facts">
                <dt>"Allowed sites"</dt><dd>{domains}</dd>
                <dt>"Identity verification"</dt><dd>{identity}</dd>
                <dt>"Answers"</dt>
                <dd>{settings.agent.clone().unwrap_or_else(|| "the router chooses".into())}</dd>
                <dt>"Limits"</dt>
                <dd>{format!("{} messages per visitor per hour, {} characters each", settings.messages_per_hour, settings.max_message_length)}</dd>
                <dt>"Changed"</dt><dd>{fmt_time(&w.updated_at)}</dd>
            </dl>
            <label for=snippet_id.clone()>"Snippet: paste before </body> on your site"</label>
            <textarea id=snippet_id.clone() class="snippet" readonly rows="2">{w.snippet.clone()}</textarea>
            <div class="actions">
                <CopyButton target=snippet_id/>
                <button type="button" aria-pressed=move || preview.get().to_string()
                    on:click=move |_| preview.update(|p| *p = !*p)>
                    {move || if preview.get() { "Hide preview" } else { "Preview" }}
                </button>
                <Show when=move || writable.get()>
                    <button type="button" on:click=move |_| editing.set(Some(id))>"Edit"</button>
                    <button type="button" on:click=move |_| {
                        rotate.dispatch(RotateWidgetSecret { id });
                    }>"New identity secret"</button>
                    <button type="button" class="danger" on:click=move |_| {
                        delete.dispatch(DeleteWidget { id });
                    }>"Delete"</button>
                </Show>
            </div>
            {move || preview.get().then(|| view! {
                <iframe class="widget-preview" src=frame.clone() title="Widget preview"></iframe>
            })}
            {move || (editing.get() == Some(id)).then(|| view! {
                <WidgetForm
                    initial=initial.clone()
                    agents=agents.clone()
                    label="Save widget"
                    prefix=format!("widget-{id}")
                    on_save=Callback::new(move |settings| {
                        update.dispatch(UpdateWidget { id, settings });
                    })
                    on_cancel=Callback::new(move |()| editing.set(None))
                />
            })}
        </section>
    }
}

/// Copies the text of the element `target` names.
#[component]
fn CopyButton(target: String) -> impl IntoView {
    let copied = RwSignal::new(false);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            let text = document()
                .get_element_by_id(&target)
                .and_then(|e| e.dyn_into::<web_sys::HtmlTextAreaElement>().ok())
                .map(|t| t.value());
            if let (Some(text), Some(window)) = (text, web_sys::window()) {
                let _ = window.navigator().clipboard().write_text(&text);
                copied.set(true);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &target;
    };
    view! {
        <button type="button" on:click=copy>
            {move || if copied.get() { "Copied" } else { "Copy snippet" }}
        </button>
    }
}

#[component]
fn WidgetForm(
    initial: WidgetSettings,
    agents: Vec<String>,
    label: &'static str,
    /// Makes the fields' ids unique on the page.
    prefix: String,
    on_save: Callback<WidgetSettings>,
    on_cancel: Callback<()>,
) -> impl IntoView {
    let s = initial.clone();
    let name = RwSignal::new(s.name.clone());
    let agent = RwSignal::new(s.agent.clone().unwrap_or_default());
    let greeting = RwSignal::new(s.greeting.clone());
    let starters = RwSignal::new(s.starter_prompts.join("\n"));
    let color = RwSignal::new(s.color.clone());
    let position = RwSignal::new(s.position.as_str().to_string());
    let launcher = RwSignal::new(s.launcher_label.clone());
    let avatar = RwSignal::new(s.avatar_url.clone().unwrap_or_default());
    let language = RwSignal::new(s.language.clone());
    let offline = RwSignal::new(s.offline_message.clone());
    let prechat = RwSignal::new(s.prechat.as_str().to_string());
    let domains = RwSignal::new(s.allowed_domains.join("\n"));
    let identity = RwSignal::new(s.identity.as_str().to_string());
    let per_hour = RwSignal::new(s.messages_per_hour.to_string());
    let max_length = RwSignal::new(s.max_message_length.to_string());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let optional = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_string());
        on_save.run(WidgetSettings {
            name: name.get_untracked(),
            agent: optional(agent.get_untracked()),
            greeting: greeting.get_untracked(),
            starter_prompts: lines(&starters.get_untracked()),
            color: color.get_untracked(),
            position: WidgetPosition::parse(&position.get_untracked())
                .unwrap_or(WidgetPosition::Right),
            launcher_label: launcher.get_untracked(),
            avatar_url: optional(avatar.get_untracked()),
            language: language.get_untracked(),
            offline_message: offline.get_untracked(),
            prechat: PrechatForm::parse(&prechat.get_untracked()).unwrap_or(PrechatForm::Off),
            allowed_domains: lines(&domains.get_untracked()),
            identity: IdentityMode::parse(&identity.get_untracked()).unwrap_or(IdentityMode::Off),
            messages_per_hour: number(per_hour, initial.messages_per_hour),
            max_message_length: number(max_length, initial.max_message_length),
        });
    };
    let field = move |suffix: &str| format!("{prefix}-{suffix}");
    view! {
        <form class="stack" on:submit=submit>
            <label for=field("name")>"Name"</label>
            <input id=field("name") type="text" required maxlength="100" bind:value=name/>
            <label for=field("domains")>"Sites allowed to show it (one origin per line, e.g. https://shop.example)"</label>
            <textarea id=field("domains") rows="2" bind:value=domains></textarea>
            <label for=field("agent")>"Who answers"</label>
            <select id=field("agent") bind:value=agent>
                <option value="">"The router chooses a specialist"</option>
                {agents.into_iter().map(|a| view! { <option value=a.clone()>{a.clone()}</option> }).collect_view()}
            </select>
            <label for=field("greeting")>"Greeting"</label>
            <textarea id=field("greeting") rows="2" maxlength="500" bind:value=greeting></textarea>
            <label for=field("starters")>"Suggested questions (one per line, up to 4)"</label>
            <textarea id=field("starters") rows="3" bind:value=starters></textarea>
            <fieldset class="grid-2">
                <legend>"Look"</legend>
                <label for=field("color")>"Colour"</label>
                <input id=field("color") type="color" bind:value=color/>
                <label for=field("position")>"Corner"</label>
                <select id=field("position") bind:value=position>
                    <option value="right">"Bottom right"</option>
                    <option value="left">"Bottom left"</option>
                </select>
                <label for=field("launcher")>"Launcher text"</label>
                <input id=field("launcher") type="text" maxlength="40" bind:value=launcher/>
                <label for=field("avatar")>"Avatar image (https:// URL)"</label>
                <input id=field("avatar") type="url" bind:value=avatar/>
                <label for=field("language")>"Language (auto, or a code such as en)"</label>
                <input id=field("language") type="text" maxlength="16" bind:value=language/>
            </fieldset>
            <label for=field("offline")>"Message outside business hours (Settings)"</label>
            <textarea id=field("offline") rows="2" maxlength="500" bind:value=offline></textarea>
            <fieldset class="grid-2">
                <legend>"Visitors"</legend>
                <label for=field("prechat")>"Ask for name and email first"</label>
                <select id=field("prechat") bind:value=prechat>
                    <option value="off">"No"</option>
                    <option value="optional">"Optional"</option>
                    <option value="required">"Required"</option>
                </select>
                <label for=field("identity")>"Identity verification"</label>
                <select id=field("identity") bind:value=identity>
                    <option value="off">"Off: all visitors are anonymous"</option>
                    <option value="optional">"Optional: signed-in visitors are verified"</option>
                    <option value="enforced">"Enforced: only visitors your site vouches for"</option>
                </select>
                <label for=field("per-hour")>"Messages per visitor per hour"</label>
                <input id=field("per-hour") type="number" min="1" max="1000" bind:value=per_hour/>
                <label for=field("max-length")>"Longest message (characters)"</label>
                <input id=field("max-length") type="number" min="1" max="8000" bind:value=max_length/>
            </fieldset>
            <div class="actions">
                <button type="submit">{label}</button>
                <button type="button" on:click=move |_| on_cancel.run(())>"Cancel"</button>
            </div>
        </form>
    }
}
