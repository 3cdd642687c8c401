//! Bookings: a week at a glance and a searchable list of every appointment (the agents' and the
//! business's own), the same as `/api/v1/bookings`; book, move and cancel, with the customer
//! told by email. Times are the tenant's local time (Settings), as the server gives them.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use leptos::prelude::*;
use leptos_meta::Title;
use uuid::Uuid;

use super::widgets::{
    can_write, fmt_time, opened_id, show_error, use_me, ActionMessage, Cursors, Pager, ReadOnlyNote,
};
use crate::api::{
    get_booking, get_email_settings, list_bookings, BookAppointment, CallOffBooking, MoveBooking,
};
use crate::types::{
    Area, Booking, BookingQuery, BookingStatus, CalendarProvider, CancelBooking, CreateBooking,
    RescheduleBooking,
};

/// What a `datetime-local` input holds.
const LOCAL_INPUT: &str = "%Y-%m-%dT%H:%M";

/// Today where the browser is (the server's UTC day while rendering).
fn today() -> NaiveDate {
    #[cfg(feature = "hydrate")]
    {
        let now = web_sys::js_sys::Date::new_0();
        if let Some(day) = NaiveDate::from_ymd_opt(
            now.get_full_year() as i32,
            now.get_month() + 1,
            now.get_date(),
        ) {
            return day;
        }
    }
    chrono::Utc::now().date_naive()
}

fn monday_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// "10:00–10:30"
fn span(b: &Booking) -> String {
    format!(
        "{}–{}",
        b.local_start.format("%H:%M"),
        b.local_end.format("%H:%M")
    )
}

#[derive(Clone, Copy)]
struct Actions {
    reschedule: ServerAction<MoveBooking>,
    cancel: ServerAction<CallOffBooking>,
}

#[component]
pub fn BookingsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Bookings);
    let create = ServerAction::<BookAppointment>::new();
    let actions = Actions {
        reschedule: ServerAction::<MoveBooking>::new(),
        cancel: ServerAction::<CallOffBooking>::new(),
    };
    let changes = move || {
        (
            create.version().get(),
            actions.reschedule.version().get(),
            actions.cancel.version().get(),
        )
    };
    let email = Resource::new(|| (), |_| get_email_settings());
    let creating = RwSignal::new(false);
    let week_view = RwSignal::new(true);
    // `?open=<id>` opens one (the Bookings and Conversations pages link to each other).
    let selected = RwSignal::new(opened_id());
    Effect::new(move |_| {
        if let Some(Ok(b)) = create.value().get() {
            creating.set(false);
            selected.set(Some(b.id));
        }
    });
    let detail = Resource::new(
        move || (changes(), selected.get()),
        |(_, id)| async move {
            match id {
                Some(id) => get_booking(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <Title text="Bookings"/>
        <h1>"Bookings"</h1>
        <p class="muted">
            "Appointments your agents booked in conversations and the ones you book yourself. "
            "Times are your business's time zone (Settings); the customer is emailed when a booking is made, moved or cancelled. "
            <a href="/api/docs#tag/bookings">"API"</a>
        </p>
        <ReadOnlyNote area=Area::Bookings/>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                // Said once it is known: without a way to send email, nobody is told.
                email.await.ok().filter(|e| !e.available).map(|_| view! {
                    <p class="notice" role="note" data-testid="no-email">
                        "Customers are not emailed: no email service is set up. "
                        <a href="/integrations">"Integrations → Email"</a>
                    </p>
                })
            })}
        </Transition>
        {move || matches!(create.value().get(), Some(Ok(_))).then(|| view! {
            <p class="notice ok" role="status">"Booked."</p>
        })}
        <ActionMessage value=actions.reschedule.value() ok="Booking moved."/>
        <ActionMessage value=actions.cancel.value() ok="Booking cancelled."/>
        <Show when=move || writable.get() && !creating.get()>
            <button type="button" on:click=move |_| {
                // A refusal from an earlier attempt is not this form's.
                create.value().set(None);
                creating.set(true);
            }>"Book an appointment"</button>
        </Show>
        <Show when=move || creating.get()>
            <NewBookingForm create on_cancel=Callback::new(move |()| creating.set(false))/>
        </Show>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(Some(b)) => view! { <BookingDetail b writable actions selected/> }.into_any(),
                    Ok(None) => ().into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <div class="actions" role="group" aria-label="View">
            <button type="button" aria-pressed=move || week_view.get().to_string()
                on:click=move |_| week_view.set(true)>"Week"</button>
            <button type="button" aria-pressed=move || (!week_view.get()).to_string()
                on:click=move |_| week_view.set(false)>"List"</button>
        </div>
        {move || if week_view.get() {
            view! { <WeekView selected changes=Signal::derive(changes)/> }.into_any()
        } else {
            view! { <BookingList selected changes=Signal::derive(changes)/> }.into_any()
        }}
    }
}

#[component]
fn NewBookingForm(create: ServerAction<BookAppointment>, on_cancel: Callback<()>) -> impl IntoView {
    let start = RwSignal::new(String::new());
    let minutes = RwSignal::new("30".to_string());
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let note = RwSignal::new(String::new());
    let notify = RwSignal::new(true);
    let problem = RwSignal::new(None::<&'static str>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(start) = NaiveDateTime::parse_from_str(&start.get_untracked(), LOCAL_INPUT) else {
            problem.set(Some("Choose the day and time it starts."));
            return;
        };
        problem.set(None);
        create.dispatch(BookAppointment {
            booking: CreateBooking {
                start,
                duration_minutes: minutes.get_untracked().trim().parse().unwrap_or(30),
                name: name.get_untracked(),
                email: email.get_untracked(),
                note: note.get_untracked(),
                notify: notify.get_untracked(),
            },
        });
    };
    view! {
        <section class="card">
            <h2>"New booking"</h2>
            <form class="stack" on:submit=submit aria-label="New booking">
                <label for="booking-start">"Starts (your business's local time)"</label>
                <input id="booking-start" type="datetime-local" required bind:value=start/>
                <label for="booking-minutes">"Minutes"</label>
                <input id="booking-minutes" type="number" min="5" max="720" step="5" required bind:value=minutes/>
                <label for="booking-name">"Customer's name"</label>
                <input id="booking-name" type="text" required maxlength="200" bind:value=name/>
                <label for="booking-email">"Customer's email"</label>
                <input id="booking-email" type="email" required maxlength="254" bind:value=email/>
                <label for="booking-note">"Note (the customer sees it)"</label>
                <textarea id="booking-note" maxlength="2000" rows="2" bind:value=note></textarea>
                <label class="check">
                    <input type="checkbox" bind:checked=notify/>
                    " Email the customer a confirmation"
                </label>
                {move || problem.get().map(|p| view! { <p class="notice error" role="alert">{p}</p> })}
                {move || create.value().get().and_then(Result::err).map(|e| view! {
                    <p class="notice error" role="alert">{e.user_message()}</p>
                })}
                <div class="confirm">
                    <button type="submit" disabled=move || create.pending().get()>"Book"</button>
                    <button type="button" class="secondary" on:click=move |_| on_cancel.run(())>"Cancel"</button>
                </div>
            </form>
        </section>
    }
}

/// Monday to Sunday, each day's bookings by time.
#[component]
fn WeekView(
    selected: RwSignal<Option<Uuid>>,
    changes: Signal<(usize, usize, usize)>,
) -> impl IntoView {
    let monday = RwSignal::new(monday_of(today()));
    let week = Resource::new(
        move || (changes.get(), monday.get()),
        |(_, monday)| {
            list_bookings(BookingQuery {
                from: Some(monday),
                to: Some(monday + Duration::days(6)),
                limit: Some(500),
                ..Default::default()
            })
        },
    );
    // "7 – 13 Dec 2026", "30 Nov – 6 Dec 2026", "29 Dec 2025 – 4 Jan 2026"
    let title = move || {
        let start = monday.get();
        let end = start + Duration::days(6);
        let first = if start.year() != end.year() {
            "%-d %b %Y"
        } else if start.month() != end.month() {
            "%-d %b"
        } else {
            "%-d"
        };
        format!("{} – {}", start.format(first), end.format("%-d %b %Y"))
    };
    view! {
        <section aria-labelledby="week-title">
            <div class="week-nav">
                <button type="button" class="secondary" aria-label="Previous week"
                    on:click=move |_| monday.update(|m| *m -= Duration::days(7))>"←"</button>
                <h2 id="week-title" aria-live="polite">{title}</h2>
                <button type="button" class="secondary" aria-label="Next week"
                    on:click=move |_| monday.update(|m| *m += Duration::days(7))>"→"</button>
                <button type="button" class="secondary"
                    on:click=move |_| monday.set(monday_of(today()))>"This week"</button>
            </div>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match week.await {
                        Ok(page) => {
                            let more = page.next_cursor.is_some();
                            let start = monday.get_untracked();
                            view! {
                                {more.then(|| view! {
                                    <p class="notice">"More bookings this week than fit here: the list shows them all."</p>
                                })}
                                <Week start items=page.items selected/>
                            }.into_any()
                        }
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Week(start: NaiveDate, items: Vec<Booking>, selected: RwSignal<Option<Uuid>>) -> impl IntoView {
    let today = today();
    view! {
        <ol class="week" data-testid="week">
            {(0..7)
                .map(|offset| {
                    let day = start + Duration::days(offset);
                    let bookings: Vec<Booking> = items
                        .iter()
                        .filter(|b| b.local_start.date() == day)
                        .cloned()
                        .collect();
                    let class = if day == today { "day today" } else { "day" };
                    view! {
                        <li class=class>
                            <h3>{day.format("%a %-d %b").to_string()}</h3>
                            {if bookings.is_empty() {
                                view! { <p class="empty small">"Free"</p> }.into_any()
                            } else {
                                view! {
                                    <ul>
                                        {bookings
                                            .into_iter()
                                            .map(|b| {
                                                let id = b.id;
                                                let cancelled = b.status == BookingStatus::Cancelled;
                                                view! {
                                                    <li>
                                                        <button type="button"
                                                            class=if cancelled { "slot cancelled" } else { "slot" }
                                                            aria-label=format!(
                                                                "{} {}{}",
                                                                span(&b),
                                                                b.name,
                                                                if cancelled { " (cancelled)" } else { "" }
                                                            )
                                                            on:click=move |_| selected.set(Some(id))>
                                                            <span class="time">{span(&b)}</span>
                                                            <span class="who">{b.name.clone()}</span>
                                                        </button>
                                                    </li>
                                                }
                                            })
                                            .collect_view()}
                                    </ul>
                                }.into_any()
                            }}
                        </li>
                    }
                })
                .collect_view()}
        </ol>
    }
}

/// Every booking, filtered, by start time, a page at a time.
#[component]
fn BookingList(
    selected: RwSignal<Option<Uuid>>,
    changes: Signal<(usize, usize, usize)>,
) -> impl IntoView {
    let status = RwSignal::new(String::new());
    let q = RwSignal::new(String::new());
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let cursors = Cursors::new();
    let day = |field: RwSignal<String>| NaiveDate::parse_from_str(&field.get(), "%Y-%m-%d").ok();
    let page = Resource::new(
        move || {
            (
                changes.get(),
                status.get(),
                q.get(),
                day(from),
                day(to),
                cursors.current.get(),
            )
        },
        |(_, status, q, from, to, cursor)| {
            list_bookings(BookingQuery {
                from,
                to,
                status: BookingStatus::parse(&status),
                q: (!q.trim().is_empty()).then(|| q.trim().to_string()),
                cursor,
                limit: Some(50),
                ..Default::default()
            })
        },
    );
    let refilter = move |field: RwSignal<String>| {
        move |ev: leptos::ev::Event| {
            field.set(event_target_value(&ev));
            cursors.reset();
        }
    };
    view! {
        <section aria-label="All bookings">
            <div class="filters">
                <label>
                    "Status"
                    <select on:change=refilter(status)>
                        <option value="">"All"</option>
                        <option value="confirmed">"Confirmed"</option>
                        <option value="cancelled">"Cancelled"</option>
                    </select>
                </label>
                <label class="grow">
                    "Customer"
                    <input type="search" placeholder="Name or email" maxlength="200"
                        on:input=refilter(q)/>
                </label>
                <label>"From"<input type="date" on:change=refilter(from)/></label>
                <label>"To"<input type="date" on:change=refilter(to)/></label>
            </div>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) if page.items.is_empty() => view! {
                            <p class="empty">"No bookings match. Your agents' bookings and your own appear here."</p>
                        }.into_any(),
                        Ok(page) => {
                            let next = page.next_cursor.clone();
                            view! {
                                <BookingTable items=page.items selected/>
                                <Pager cursors next back="Earlier" forward="Later"/>
                            }.into_any()
                        }
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn BookingTable(items: Vec<Booking>, selected: RwSignal<Option<Uuid>>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="booking-list">
                <thead>
                    <tr>
                        <th scope="col">"When"</th>
                        <th scope="col">"Customer"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Made by"</th>
                        <th scope="col"><span class="sr-only">"Open"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|b| {
                            let id = b.id;
                            let status = b.status.as_str();
                            view! {
                                <tr>
                                    <td>{format!("{} {}", b.local_start.format("%a %Y-%m-%d"), span(&b))}</td>
                                    <td>{b.name.clone()}<br/><span class="muted small">{b.email.clone()}</span></td>
                                    <td><span class=format!("badge booking-{status}")>{status}</span></td>
                                    <td>{b.source.as_str()}</td>
                                    <td class="actions">
                                        <button type="button" class="secondary"
                                            aria-label=format!("Open the booking of {} at {}", b.name, span(&b))
                                            on:click=move |_| selected.set(Some(id))>"Open"</button>
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

#[component]
fn BookingDetail(
    b: Booking,
    writable: Signal<bool>,
    actions: Actions,
    selected: RwSignal<Option<Uuid>>,
) -> impl IntoView {
    let id = b.id;
    let confirmed = b.status == BookingStatus::Confirmed;
    let minutes = (b.ends_at - b.starts_at).num_minutes();
    let start = RwSignal::new(b.local_start.format(LOCAL_INPUT).to_string());
    let length = RwSignal::new(minutes.to_string());
    let notify = RwSignal::new(true);
    let reason = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<&'static str>);
    let move_it = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(start) = NaiveDateTime::parse_from_str(&start.get_untracked(), LOCAL_INPUT) else {
            problem.set(Some("Choose the new day and time."));
            return;
        };
        problem.set(None);
        actions.reschedule.dispatch(MoveBooking {
            id,
            change: RescheduleBooking {
                start,
                duration_minutes: length.get_untracked().trim().parse().ok(),
                notify: notify.get_untracked(),
            },
        });
    };
    let cancel_it = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        actions.cancel.dispatch(CallOffBooking {
            id,
            cancel: CancelBooking {
                reason: reason.get_untracked(),
                notify: notify.get_untracked(),
            },
        });
    };
    let status = b.status.as_str();
    // Opening a booking (from a long list, or by keyboard) brings it into view and moves the
    // focus to it.
    let heading = NodeRef::<leptos::html::H2>::new();
    Effect::new(move |_| {
        if let Some(h) = heading.get() {
            let _ = h.focus();
            h.scroll_into_view();
        }
    });
    view! {
        <section class="card stack booking-detail" aria-labelledby="booking-title">
            <h2 id="booking-title" tabindex="-1" node_ref=heading>
                {format!("{} · {}", b.name, b.local_start.format("%A %-d %B %Y"))}
                " "<span class=format!("badge booking-{status}")>{status}</span>
            </h2>
            <dl class="facts">
                <dt>"When"</dt><dd>{format!("{} ({})", span(&b), b.timezone)}</dd>
                <dt>"Email"</dt><dd>{b.email.clone()}</dd>
                {(!b.note.is_empty()).then(|| view! { <dt>"Note"</dt><dd>{b.note.clone()}</dd> })}
                <dt>"Made by"</dt><dd>{format!("{} on {}", b.source.as_str(), fmt_time(&b.created_at))}</dd>
                <dt>"Calendar"</dt>
                <dd>{match b.provider {
                    CalendarProvider::Google => "Google Calendar",
                    CalendarProvider::BuiltIn => "The platform's own",
                }}</dd>
                <dt>"Reference"</dt><dd><code data-testid="booking-reference">{b.id.to_string()}</code></dd>
                {b.conversation_id.map(|c| view! {
                    <dt>"Conversation"</dt>
                    <dd><a href=format!("/conversations?open={c}")>"Open the conversation"</a></dd>
                })}
                {b.cancelled_at.map(|t| view! { <dt>"Cancelled"</dt><dd>{fmt_time(&t)}</dd> })}
                {b.cancel_reason.clone().map(|r| view! { <dt>"Reason"</dt><dd>{r}</dd> })}
            </dl>
            <Show when=move || writable.get() && confirmed>
                <form class="stack" on:submit=move_it aria-label="Move the booking">
                    <h3>"Move"</h3>
                    <label for="move-start">"New start"</label>
                    <input id="move-start" type="datetime-local" required bind:value=start/>
                    <label for="move-minutes">"Minutes"</label>
                    <input id="move-minutes" type="number" min="5" max="720" step="5" required bind:value=length/>
                    {move || problem.get().map(|p| view! { <p class="notice error" role="alert">{p}</p> })}
                    <button type="submit" disabled=move || actions.reschedule.pending().get()>"Move booking"</button>
                </form>
                <form class="stack" on:submit=cancel_it aria-label="Cancel the booking">
                    <h3>"Cancel"</h3>
                    <label for="cancel-reason">"Reason (the customer reads it)"</label>
                    <input id="cancel-reason" type="text" maxlength="500" bind:value=reason/>
                    <button type="submit" class="danger" disabled=move || actions.cancel.pending().get()>"Cancel booking"</button>
                </form>
                <label class="check">
                    <input type="checkbox" bind:checked=notify/>
                    " Email the customer about the change"
                </label>
            </Show>
            <div class="actions">
                <button type="button" class="secondary" on:click=move |_| selected.set(None)>"Close"</button>
            </div>
        </section>
    }
}

/// The bookings a conversation made, linked to the Bookings page; nothing when there are none
/// (or the reader may not see bookings).
#[component]
pub fn ConversationBookings(conversation: Uuid) -> impl IntoView {
    let made = Resource::new(
        move || conversation,
        |conversation| {
            list_bookings(BookingQuery {
                conversation_id: Some(conversation),
                limit: Some(20),
                ..Default::default()
            })
        },
    );
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                made.await.ok().filter(|page| !page.items.is_empty()).map(|page| view! {
                    <div data-testid="conversation-bookings">
                        <h3>"Bookings made here"</h3>
                        <ul>
                            {page.items.into_iter().map(|b| view! {
                                <li>
                                    <a href=format!("/bookings?open={}", b.id)>
                                        {format!("{} {} · {}", b.local_start.format("%a %Y-%m-%d"), span(&b), b.name)}
                                    </a>
                                    " "<span class=format!("badge booking-{}", b.status.as_str())>{b.status.as_str()}</span>
                                </li>
                            }).collect_view()}
                        </ul>
                    </div>
                })
            })}
        </Transition>
    }
}
