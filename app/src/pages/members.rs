//! Members: add an existing user, create a user with a temporary password, change role, remove.

use leptos::prelude::*;
use leptos_meta::Title;

use super::widgets::{can_write, fmt_time, show_error, use_me, ActionMessage, ReadOnlyNote};
use crate::api::{list_members, AddExistingMember, ChangeRole, CreateMember, RemoveMember};
use crate::types::{AddMember, Area, CreateUser, Member, Role};

#[component]
pub fn MembersPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Members);
    let add = ServerAction::<AddExistingMember>::new();
    let create = ServerAction::<CreateMember>::new();
    let change = ServerAction::<ChangeRole>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let members = Resource::new(
        move || {
            (
                add.version().get(),
                create.version().get(),
                change.version().get(),
                remove.version().get(),
            )
        },
        |_| list_members(),
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
            <div class="columns">
                <AddMemberForm add/>
                <CreateUserForm create/>
            </div>
        </Show>
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
fn AddMemberForm(add: ServerAction<AddExistingMember>) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let role = RwSignal::new("viewer".to_string());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        add.dispatch(AddExistingMember {
            add: AddMember {
                email: email.get_untracked(),
                role: parse_role(&role.get_untracked()),
            },
        });
    };
    view! {
        <form class="card stack" on:submit=submit aria-labelledby="add-member">
            <h2 id="add-member">"Add an existing user"</h2>
            <label for="add-email">"Email"</label>
            <input id="add-email" type="email" required bind:value=email/>
            <label for="add-role">"Role"</label>
            <select id="add-role" on:change=move |ev| role.set(event_target_value(&ev))>
                {role_options(Role::Viewer)}
            </select>
            <button type="submit">"Add member"</button>
            <ActionMessage value=add.value() ok="Member added."/>
        </form>
    }
}

#[component]
fn CreateUserForm(create: ServerAction<CreateMember>) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let role = RwSignal::new("viewer".to_string());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        create.dispatch(CreateMember {
            create: CreateUser {
                email: email.get_untracked(),
                name: name.get_untracked(),
                role: parse_role(&role.get_untracked()),
            },
        });
    };
    view! {
        <form class="card stack" on:submit=submit aria-labelledby="create-user">
            <h2 id="create-user">"Create a new user"</h2>
            <label for="new-name">"Name"</label>
            <input id="new-name" type="text" required bind:value=name/>
            <label for="new-email">"Email"</label>
            <input id="new-email" type="email" required bind:value=email/>
            <label for="new-role">"Role"</label>
            <select id="new-role" on:change=move |ev| role.set(event_target_value(&ev))>
                {role_options(Role::Viewer)}
            </select>
            <button type="submit">"Create user"</button>
            {move || match create.value().get() {
                Some(Ok(created)) => view! {
                    <div class="notice ok secret" role="status">
                        <p>{format!("Created {}. Their temporary password, shown once:", created.member.email)}</p>
                        <code data-testid="temp-password">{created.temporary_password}</code>
                    </div>
                }
                    .into_any(),
                Some(Err(e)) => show_error(&e),
                None => ().into_any(),
            }}
        </form>
    }
}
