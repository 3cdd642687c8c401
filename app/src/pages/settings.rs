//! Tenant settings: name, time zone, business hours, origins allowed to call the API, what the
//! agents may do on their own, and the LLM provider ([`super::llm`]).

use leptos::prelude::*;
use leptos_meta::Title;

use super::llm::LlmProviderPanel;
use super::widgets::{can_write, lines, number, show_error, use_me, ActionMessage, ReadOnlyNote};
use crate::api::{get_tenant, SaveSettings};
use crate::types::{AgentPolicy, Area, BusinessHours, Tenant, UpdateTenant, WEEKDAYS};

#[component]
pub fn SettingsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Tenant);
    let save = ServerAction::<SaveSettings>::new();
    let tenant = Resource::new(|| (), |_| get_tenant());
    view! {
        <Title text="Settings"/>
        <h1>"Settings"</h1>
        <ReadOnlyNote area=Area::Tenant/>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match tenant.await {
                    Ok(t) => view! { <SettingsForm tenant=t save writable/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Suspense>
        <LlmProviderPanel/>
    }
}

/// One weekday's row of the business-hours editor.
#[derive(Clone, Copy)]
struct DayRow {
    open: RwSignal<bool>,
    from: RwSignal<String>,
    to: RwSignal<String>,
}

#[component]
fn SettingsForm(
    tenant: Tenant,
    save: ServerAction<SaveSettings>,
    writable: Signal<bool>,
) -> impl IntoView {
    let name = RwSignal::new(tenant.name.clone());
    let timezone = RwSignal::new(tenant.timezone.clone());
    let origins = RwSignal::new(tenant.allowed_origins.join("\n"));
    let policy = tenant.agent_policy.clone();
    let recipients = RwSignal::new(policy.email_recipients.join("\n"));
    let per_day = RwSignal::new(policy.emails_per_day.to_string());
    let per_caller = RwSignal::new(policy.emails_per_caller_per_day.to_string());
    let bookings = RwSignal::new(policy.bookings_per_conversation.to_string());
    let horizon = RwSignal::new(policy.booking_horizon_days.to_string());
    let redact = RwSignal::new(policy.redact_transcripts);
    let days: Vec<DayRow> = (0..7u8)
        .map(|d| {
            let hours = tenant.business_hours.iter().find(|h| h.weekday == d);
            DayRow {
                open: RwSignal::new(hours.is_some()),
                from: RwSignal::new(hours.map_or("09:00".into(), |h| h.open.clone())),
                to: RwSignal::new(hours.map_or("17:00".into(), |h| h.close.clone())),
            }
        })
        .collect();
    let rows = days.clone();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let business_hours = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.open.get_untracked())
            .map(|(d, r)| BusinessHours {
                weekday: d as u8,
                open: r.from.get_untracked(),
                close: r.to.get_untracked(),
            })
            .collect();
        save.dispatch(SaveSettings {
            update: UpdateTenant {
                name: Some(name.get_untracked()),
                timezone: Some(timezone.get_untracked()),
                business_hours: Some(business_hours),
                allowed_origins: Some(lines(&origins.get_untracked())),
                agent_policy: Some(AgentPolicy {
                    email_recipients: lines(&recipients.get_untracked()),
                    emails_per_day: number(per_day, policy.emails_per_day),
                    emails_per_caller_per_day: number(per_caller, policy.emails_per_caller_per_day),
                    bookings_per_conversation: number(bookings, policy.bookings_per_conversation),
                    booking_horizon_days: number(horizon, policy.booking_horizon_days),
                    redact_transcripts: redact.get_untracked(),
                }),
            },
        });
    };
    view! {
        <form class="card stack" on:submit=submit>
            <p class="muted">{format!("Slug: {}", tenant.slug)}</p>
            <label for="tenant-name">"Company name"</label>
            <input id="tenant-name" type="text" maxlength="200" required bind:value=name/>
            <label for="tenant-tz">"Time zone (IANA, e.g. Europe/Berlin)"</label>
            <input id="tenant-tz" type="text" required bind:value=timezone/>
            <fieldset>
                <legend>"Business hours"</legend>
                <div class="hours-grid">
                    {days
                        .into_iter()
                        .enumerate()
                        .map(|(d, row)| {
                            let day = WEEKDAYS[d];
                            view! {
                                <label class="check">
                                    <input type="checkbox" bind:checked=row.open/>
                                    {day}
                                </label>
                                <label class="sr-only" for=format!("open-{d}")>{format!("{day} opens")}</label>
                                <input id=format!("open-{d}") type="time" bind:value=row.from disabled=move || !row.open.get()/>
                                <label class="sr-only" for=format!("close-{d}")>{format!("{day} closes")}</label>
                                <input id=format!("close-{d}") type="time" bind:value=row.to disabled=move || !row.open.get()/>
                            }
                        })
                        .collect_view()}
                </div>
            </fieldset>
            <label for="tenant-origins">"Websites allowed to call the API (one origin per line, e.g. https://shop.example)"</label>
            <textarea id="tenant-origins" rows="3" bind:value=origins></textarea>
            <fieldset class="stack">
                <legend>"What the agents may do on their own"</legend>
                <label for="policy-recipients">"Besides the customer's own address, the agents may email (one address or @domain per line)"</label>
                <textarea id="policy-recipients" rows="2" bind:value=recipients></textarea>
                <label for="policy-per-day">"Emails per day, all conversations"</label>
                <input id="policy-per-day" type="number" min="0" max="100000" bind:value=per_day/>
                <label for="policy-per-caller">"Emails per day for one caller"</label>
                <input id="policy-per-caller" type="number" min="0" max="10000" bind:value=per_caller/>
                <label for="policy-bookings">"Bookings one conversation may make"</label>
                <input id="policy-bookings" type="number" min="0" max="100" bind:value=bookings/>
                <label for="policy-horizon">"How many days ahead a booking may start"</label>
                <input id="policy-horizon" type="number" min="1" max="730" bind:value=horizon/>
                <label class="check">
                    <input type="checkbox" bind:checked=redact/>
                    "Store conversations with personal data masked (emails, phone and card numbers)"
                </label>
            </fieldset>
            <button type="submit" disabled=move || !writable.get() || save.pending().get()>
                "Save settings"
            </button>
            <ActionMessage value=save.value() ok="Settings saved."/>
        </form>
    }
}
