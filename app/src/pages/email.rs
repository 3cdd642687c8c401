//! Who sends the tenant's email (a panel of the Integrations page): the platform's relay, or
//! its own SendGrid or Mailgun account; a test message through the service in use.

use leptos::prelude::*;

use super::widgets::{can_write, fmt_time, show_error, successes, use_me, ActionMessage};
use crate::api::{get_email_settings, ResetEmailSettings, SaveEmailSettings, SendTestEmail};
use crate::types::{
    Area, EmailProvider, EmailSettings, MailgunRegion, TestEmail, UpdateEmailSettings,
};

#[component]
pub fn EmailPanel() -> impl IntoView {
    let writable = can_write(use_me(), Area::Integrations);
    let save = ServerAction::<SaveEmailSettings>::new();
    let reset = ServerAction::<ResetEmailSettings>::new();
    let test = ServerAction::<SendTestEmail>::new();
    // Read again after a successful save only: a refused one keeps the form as typed.
    let saved = successes(save);
    let settings = Resource::new(
        move || (saved.get(), reset.version().get()),
        |_| get_email_settings(),
    );
    view! {
        <section class="card stack" aria-labelledby="email-provider">
            <h2 id="email-provider">"Email"</h2>
            <p class="muted">
                "Emails your agents send (summaries, confirmations) go out through the platform's
                mail server, or through your own SendGrid or Mailgun account from your own address.
                The API key is stored encrypted and never shown again."
            </p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match settings.await {
                        Ok(current) => view! { <EmailForm current save reset test writable/> }.into_any(),
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

fn describe(s: &EmailSettings) -> &'static str {
    match (s.provider, s.available) {
        (EmailProvider::Sendgrid, _) => "Your SendGrid account",
        (EmailProvider::Mailgun, _) => "Your Mailgun account",
        (EmailProvider::Platform, true) => "The platform's mail server",
        (EmailProvider::Platform, false) => {
            "None: the platform has no mail server, so agents cannot send email"
        }
    }
}

#[component]
fn EmailForm(
    current: EmailSettings,
    save: ServerAction<SaveEmailSettings>,
    reset: ServerAction<ResetEmailSettings>,
    test: ServerAction<SendTestEmail>,
    writable: Signal<bool>,
) -> impl IntoView {
    let own = current.provider != EmailProvider::Platform;
    let provider = RwSignal::new(if own {
        current.provider.as_str().to_string()
    } else {
        "sendgrid".to_string()
    });
    let from = RwSignal::new(current.from.clone().unwrap_or_default());
    let domain = RwSignal::new(current.mailgun_domain.clone().unwrap_or_default());
    let region = RwSignal::new(
        current
            .mailgun_region
            .unwrap_or_default()
            .as_str()
            .to_string(),
    );
    let api_key = RwSignal::new(String::new());
    let test_to = RwSignal::new(String::new());
    let mailgun = move || provider.get() == "mailgun";
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key = api_key.get_untracked();
        let domain = domain.get_untracked();
        save.dispatch(SaveEmailSettings {
            update: UpdateEmailSettings {
                provider: EmailProvider::parse(&provider.get_untracked())
                    .unwrap_or(EmailProvider::Sendgrid),
                from: from.get_untracked().trim().to_string(),
                mailgun_domain: (!domain.trim().is_empty()).then(|| domain.trim().to_string()),
                mailgun_region: MailgunRegion::parse(&region.get_untracked()).unwrap_or_default(),
                api_key: (!key.is_empty()).then_some(key),
            },
        });
        api_key.set(String::new());
    };
    let send_test = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        test.dispatch(SendTestEmail {
            test: TestEmail {
                to: test_to.get_untracked().trim().to_string(),
            },
        });
    };
    let stored_provider = current.provider;
    view! {
        <dl class="scope-grid" data-testid="email-current">
            <dt>"In use"</dt>
            <dd>{describe(&current)}</dd>
            {current.from.clone().map(|f| view! { <dt>"Sender"</dt><dd>{f}</dd> })}
            {current.mailgun_domain.clone().map(|d| view! { <dt>"Domain"</dt><dd><code>{d}</code></dd> })}
            {current.api_key_hint.clone().map(|h| view! { <dt>"API key"</dt><dd>{format!("stored, ends in …{h}")}</dd> })}
            {current.updated_at.as_ref().map(|t| view! { <dt>"Changed"</dt><dd>{fmt_time(t)}</dd> })}
        </dl>
        <form class="stack" on:submit=submit aria-label="Your own email provider">
            <label for="email-provider-choice">"Provider"</label>
            <select id="email-provider-choice" bind:value=provider>
                <option value="sendgrid">"SendGrid"</option>
                <option value="mailgun">"Mailgun"</option>
            </select>
            <label for="email-from">"Sender (e.g. Shop <hello@shop.example>)"</label>
            <input id="email-from" type="text" required maxlength="320" bind:value=from/>
            <Show when=mailgun>
                <label for="email-domain">"Mailgun sending domain"</label>
                <input id="email-domain" type="text" maxlength="253"
                    placeholder="mg.shop.example" bind:value=domain/>
                <label for="email-region">"Mailgun region"</label>
                <select id="email-region" bind:value=region>
                    <option value="us">"US"</option>
                    <option value="eu">"EU"</option>
                </select>
            </Show>
            <label for="email-api-key">
                {move || {
                    let same = EmailProvider::parse(&provider.get()) == Some(stored_provider);
                    if own && same { "New API key (leave empty to keep the stored one)" } else { "API key" }
                }}
            </label>
            <input id="email-api-key" type="password" autocomplete="off" maxlength="4096" bind:value=api_key/>
            <div class="confirm">
                <button type="submit" disabled=move || !writable.get() || save.pending().get()>
                    "Save email settings"
                </button>
                <button type="button" class="secondary"
                    disabled=move || !writable.get() || !own || reset.pending().get()
                    on:click=move |_| { reset.dispatch(ResetEmailSettings {}); }>
                    "Use the platform's mail server"
                </button>
            </div>
            <ActionMessage value=save.value() ok="Email settings saved."/>
            <ActionMessage value=reset.value() ok="Back to the platform's mail server."/>
        </form>
        <form class="confirm" on:submit=send_test aria-label="Send a test email">
            <label for="email-test-to">"Send a test email to"</label>
            <input id="email-test-to" type="email" required maxlength="254" bind:value=test_to/>
            <button type="submit" class="secondary"
                disabled=move || !writable.get() || test.pending().get()>"Send test"</button>
        </form>
        <ActionMessage value=test.value() ok="Test email queued: the Jobs page shows whether it was delivered."/>
    }
}
