//! Members: invite people (they accept by following a single-use link), revoke invitations,
//! change roles, remove members.

use leptos::prelude::*;
use leptos_meta::Title;

use super::widgets::{can_write, fmt_time, show_error, use_me, ActionMessage, ReadOnlyNote};
use crate::api::{
    list_invitations, list_members, ChangeRole, RemoveMember, RevokeInvitation, SendInvitation,
};
use crate::types::{self, Area, Invitation, InvitationStatus, Member, Role};

#[component]
pub fn MembersPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Members);
    let invite = ServerAction::<SendInvitation>::new();
    let revoke = ServerAction::<RevokeInvitation>::new();
    let change = ServerAction::<ChangeRole>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let members = Resource::new(
        move || {
            (
                invite.version().get(),
                change.version().get(),
                remove.version().get(),
            )
        },
        |_| list_members(),
    );
    let invitations = Resource::new(
        move || (invite.version().get(), revoke.version().get()),
        |_| list_invitations(),
    );
    view! {
        <Title text="Members"/>
        <h1>"Members"</h1>
        <ReadOnlyNote area=Area::Members/>
        <ActionMessage value=change.value() ok="Role changed."/>
        <ActionMessage value=remove.value() ok="Member removed."/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match members.await {
                    Ok(list) if list.is_empty() => {
                        view! { <p class="empty">"No members."</p> }.into_any()
                    }
                    Ok(list) => view! { <MemberTable list change remove writable/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <Show when=move || writable.get()>
            <InviteForm invite/>
        </Show>
        <h2 id="invitations">"Invitations"</h2>
        <ActionMessage value=revoke.value() ok="Invitation revoked; its link no longer works."/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match invitations.await {
                    Ok(list) if list.is_empty() => {
                        view! { <p class="empty">"No invitations yet."</p> }.into_any()
                    }
                    Ok(list) => view! { <InvitationTable list revoke writable/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

fn role_options(selected: Role) -> impl IntoView {
    Role::ALL
        .into_iter()
        .map(|r| view! { <option value=r.as_str() selected=r == selected>{r.as_str()}</option> })
        .collect_view()
}

fn parse_role(value: &str) -> Role {
    Role::parse(value).unwrap_or(Role::Viewer)
}

#[component]
fn MemberTable(
    list: Vec<Member>,
    change: ServerAction<ChangeRole>,
    remove: ServerAction<RemoveMember>,
    writable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Email"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col">"Joined"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|m| {
                            let user_id = m.user_id;
                            let select_id = format!("role-{user_id}");
                            view! {
                                <tr>
                                    <td>{m.name.clone()}</td>
                                    <td>{m.email.clone()}</td>
                                    <td>
                                        <label class="sr-only" for=select_id.clone()>
                                            {format!("Role of {}", m.email)}
                                        </label>
                                        <select
                                            id=select_id
                                            disabled=move || !writable.get()
                                            on:change=move |ev| {
                                                let role = parse_role(&event_target_value(&ev));
                                                change.dispatch(ChangeRole { user_id, role });
                                            }
                                        >
                                            {role_options(m.role)}
                                        </select>
                                    </td>
                                    <td>{fmt_time(&m.joined_at)}</td>
                                    <td>
                                        <button
                                            class="danger"
                                            disabled=move || !writable.get()
                                            aria-label=format!("Remove {}", m.email)
                                            on:click=move |_| {
                                                remove.dispatch(RemoveMember { user_id });
                                            }
                                        >
                                            "Remove"
                                        </button>
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
fn InvitationTable(
    list: Vec<Invitation>,
    revoke: ServerAction<RevokeInvitation>,
    writable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table aria-labelledby="invitations">
                <thead>
                    <tr>
                        <th scope="col">"Email"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Invited by"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|i| {
                            let id = i.id;
                            let pending = i.status == InvitationStatus::Pending;
                            view! {
                                <tr>
                                    <td>{i.email.clone()}</td>
                                    <td>{i.role.as_str()}</td>
                                    <td><span class=format!("badge {}", i.status.as_str())>{i.status.as_str()}</span></td>
                                    <td>{i.invited_by.clone()}</td>
                                    <td>{fmt_time(&i.expires_at)}</td>
                                    <td>
                                        {pending.then(|| view! {
                                            <button
                                                class="danger"
                                                disabled=move || !writable.get()
                                                aria-label=format!("Revoke the invitation to {}", i.email)
                                                on:click=move |_| {
                                                    revoke.dispatch(RevokeInvitation { id });
                                                }
                                            >
                                                "Revoke"
                                            </button>
                                        })}
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
fn InviteForm(invite: ServerAction<SendInvitation>) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let role = RwSignal::new("viewer".to_string());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        invite.dispatch(SendInvitation {
            invite: types::InviteMember {
                email: email.get_untracked(),
                role: parse_role(&role.get_untracked()),
            },
        });
    };
    view! {
        <form class="card stack" on:submit=submit aria-labelledby="invite-member">
            <h2 id="invite-member">"Invite someone"</h2>
            <p class="muted">
                "They join when they follow the invitation's link: they sign in, or choose a password if they are new here. The link works once and expires after 7 days."
            </p>
            <label for="invite-email">"Email"</label>
            <input id="invite-email" type="email" required bind:value=email/>
            <label for="invite-role">"Role"</label>
            <select id="invite-role" on:change=move |ev| role.set(event_target_value(&ev))>
                {role_options(Role::Viewer)}
            </select>
            <button type="submit" disabled=move || invite.pending().get()>"Invite"</button>
            {move || match invite.value().get() {
                Some(Ok(created)) => view! {
                    <div class="notice ok secret" role="status">
                        <p>
                            {format!("Invited {}. ", created.invitation.email)}
                            {if created.emailed {
                                "The link was emailed to them. It is also shown here, once:"
                            } else {
                                "Pass this link on to them; it is shown once:"
                            }}
                        </p>
                        <code data-testid="invitation-link">{created.link}</code>
                    </div>
                }
                    .into_any(),
                Some(Err(e)) => show_error(&e),
                None => ().into_any(),
            }}
        </form>
    }
}
