//! Shared request/response types: used by server functions, the REST API and the browser.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AppError, FieldError};
use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// A `snake_case` string enum with `ALL`, `as_str` and `parse`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "ssr", derive(ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

/// A member's role in one tenant. Ordered from most to least privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Editor,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Result<Role, AppError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| AppError::invalid("role", "must be one of owner, admin, editor, viewer"))
    }

    /// What a member with this role may do, as API-key-style scopes.
    pub fn scopes(self) -> Vec<Scope> {
        Area::ALL
            .into_iter()
            .map(|area| {
                let level = match self {
                    Role::Owner | Role::Admin => Level::Write,
                    Role::Editor if area.is_content() => Level::Write,
                    Role::Editor | Role::Viewer => Level::Read,
                };
                Scope { area, level }
            })
            .collect()
    }
}

/// A part of the platform that permissions are granted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Tenant,
    Members,
    ApiKeys,
    Audit,
    Knowledge,
    Agents,
    Workflows,
    Conversations,
    Jobs,
    Integrations,
    Widgets,
    Bookings,
}

impl Area {
    pub const ALL: [Area; 12] = [
        Area::Tenant,
        Area::Members,
        Area::ApiKeys,
        Area::Audit,
        Area::Knowledge,
        Area::Agents,
        Area::Workflows,
        Area::Conversations,
        Area::Jobs,
        Area::Integrations,
        Area::Widgets,
        Area::Bookings,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Area::Tenant => "tenant",
            Area::Members => "members",
            Area::ApiKeys => "api_keys",
            Area::Audit => "audit",
            Area::Knowledge => "knowledge",
            Area::Agents => "agents",
            Area::Workflows => "workflows",
            Area::Conversations => "conversations",
            Area::Jobs => "jobs",
            Area::Integrations => "integrations",
            Area::Widgets => "widgets",
            Area::Bookings => "bookings",
        }
    }

    /// Areas an editor may change; the rest is administration.
    fn is_content(self) -> bool {
        !matches!(
            self,
            Area::Tenant | Area::Members | Area::ApiKeys | Area::Audit
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Read,
    Write,
}

/// A permission such as `api_keys:write`. Write implies read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub area: Area,
    pub level: Level,
}

impl Scope {
    pub fn all() -> Vec<Scope> {
        Area::ALL
            .into_iter()
            .flat_map(|area| {
                [Level::Read, Level::Write]
                    .into_iter()
                    .map(move |level| Scope { area, level })
            })
            .collect()
    }

    pub fn parse(s: &str) -> Option<Scope> {
        let (area, level) = s.split_once(':')?;
        let area = Area::ALL.into_iter().find(|a| a.as_str() == area)?;
        let level = match level {
            "read" => Level::Read,
            "write" => Level::Write,
            _ => return None,
        };
        Some(Scope { area, level })
    }

    /// Parses a list of scope strings, naming each one that is not a scope.
    pub fn parse_list(field: &str, items: &[String]) -> Result<Vec<Scope>, AppError> {
        let mut scopes = Vec::new();
        let mut errors = Vec::new();
        for item in items {
            match Scope::parse(item.trim()) {
                Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
                Some(_) => {}
                None => errors.push(FieldError::new(
                    field,
                    format!("unknown scope '{item}' (expected AREA:read or AREA:write)"),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        Ok(scopes)
    }

    pub fn allows(&self, area: Area, level: Level) -> bool {
        self.area == area && self.level >= level
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Read => "read",
            Level::Write => "write",
        };
        write!(f, "{}:{}", self.area.as_str(), level)
    }
}

/// Opening hours for one weekday (0 = Monday … 6 = Sunday), times as `HH:MM`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct BusinessHours {
    pub weekday: u8,
    pub open: String,
    pub close: String,
}

pub const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    pub business_hours: Vec<BusinessHours>,
    /// Browser origins (`https://shop.example`) whose pages may call the REST API with this
    /// tenant's keys.
    pub allowed_origins: Vec<String>,
    pub agent_policy: AgentPolicy,
    pub created_at: DateTime<Utc>,
}

/// What the tenant's agents may do on their own: whom they may email and how often, how many
/// bookings one conversation may make and how far ahead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct AgentPolicy {
    /// Addresses (`desk@acme.example`) or whole domains (`@acme.example`) the agents may email
    /// besides the customer's own (an address the customer wrote in the conversation). At
    /// most 50.
    #[garde(length(max = 50), inner(custom(v::recipient)))]
    pub email_recipients: Vec<String>,
    /// Emails the agents may send per day, all conversations together.
    #[garde(range(max = 100_000))]
    pub emails_per_day: u32,
    /// Emails per day on behalf of one caller (an API key or console user, later a widget
    /// visitor).
    #[garde(range(max = 10_000))]
    pub emails_per_caller_per_day: u32,
    /// Bookings one conversation may make.
    #[garde(range(max = 100))]
    pub bookings_per_conversation: u32,
    /// How many days ahead a booking may start.
    #[garde(range(min = 1, max = 730))]
    pub booking_horizon_days: u32,
    /// Store transcripts with personal data masked (emails, phone numbers, card numbers,
    /// IBANs, SSNs): messages, titles and the tool calls in the step trace. The live answer is
    /// not masked. Off by default.
    #[garde(skip)]
    pub redact_transcripts: bool,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            email_recipients: Vec::new(),
            emails_per_day: 100,
            emails_per_caller_per_day: 10,
            bookings_per_conversation: 2,
            booking_horizon_days: 90,
            redact_transcripts: false,
        }
    }
}

impl AgentPolicy {
    /// Whether `address` is on the tenant's own list (an address, or `@domain`).
    pub fn allows_recipient(&self, address: &str) -> bool {
        let address = address.trim().to_lowercase();
        self.email_recipients.iter().any(|allowed| {
            let allowed = allowed.trim().to_lowercase();
            if allowed.starts_with('@') {
                address.ends_with(&allowed)
            } else {
                address == allowed
            }
        })
    }
}

/// A new tenant (created by platform operators through the CLI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
pub struct CreateTenant {
    #[garde(custom(v::slug))]
    pub slug: String,
    #[garde(custom(v::name::<200>))]
    pub name: String,
}

/// Changes to a tenant's settings; absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateTenant {
    #[garde(custom(v::optional(v::name::<200>)))]
    pub name: Option<String>,
    #[garde(custom(v::optional(v::timezone)))]
    pub timezone: Option<String>,
    #[garde(custom(v::optional(v::business_hours)))]
    pub business_hours: Option<Vec<BusinessHours>>,
    /// Replaces the list; at most 20.
    #[garde(custom(v::optional(v::origins)))]
    pub allowed_origins: Option<Vec<String>>,
    /// Replaces the whole policy.
    #[garde(dive)]
    pub agent_policy: Option<AgentPolicy>,
}

/// A tenant the signed-in user belongs to, with the role held there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantMembership {
    pub tenant_id: Uuid,
    pub slug: String,
    pub name: String,
    pub role: Role,
}

/// Who is signed in to the console and in which tenant they are working.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub tenant: TenantMembership,
    pub memberships: Vec<TenantMembership>,
    /// Signed in with a temporary password: until they choose their own, the account can do
    /// nothing else (the server refuses every other call).
    #[serde(default)]
    pub must_change_password: bool,
}

impl CurrentUser {
    pub fn can_write(&self, area: Area) -> bool {
        self.tenant
            .role
            .scopes()
            .iter()
            .any(|s| s.allows(area, Level::Write))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// An account the platform's operator creates from the CLI (the first owner of a tenant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
pub struct CreateUser {
    #[garde(custom(v::email))]
    pub email: String,
    #[garde(custom(v::name::<200>))]
    pub name: String,
    #[garde(skip)]
    pub role: Role,
}

/// A member's new role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateMember {
    pub role: Role,
}

/// Invite a person to the tenant: they accept by following the invitation's link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct InviteMember {
    #[garde(custom(v::email))]
    pub email: String,
    #[garde(skip)]
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub status: InvitationStatus,
    pub invited_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
}

/// A new invitation. `link` holds its single-use token and is shown this once: pass it on to
/// the person (it is also mailed to them when the platform can send email, see `emailed`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreatedInvitation {
    pub invitation: Invitation,
    pub link: String,
    pub emailed: bool,
}

/// Without the link: `{:?}` in a log line must not print its token.
impl std::fmt::Debug for CreatedInvitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedInvitation")
            .field("invitation", &self.invitation)
            .field("link", &"[redacted]")
            .field("emailed", &self.emailed)
            .finish()
    }
}

/// What the invitation page shows to whoever holds a valid link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationPreview {
    pub tenant_name: String,
    pub email: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
pub struct PasswordChange {
    #[garde(length(min = 1))]
    pub current: String,
    #[garde(length(chars, min = MIN_PASSWORD_LEN, max = 128))]
    pub new: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChange { .. }")
    }
}

pub const MIN_PASSWORD_LEN: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The recognisable start of the key (`apk_…`), safe to show.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreateApiKey {
    #[garde(custom(v::name::<100>))]
    pub name: String,
    /// Permissions such as `knowledge:read` or `api_keys:write`; write implies read.
    #[garde(length(min = 1), inner(custom(v::scope)))]
    pub scopes: Vec<String>,
}

/// A new key. `secret` is the whole key and is shown this once; only its hash is stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// Without the secret: `{:?}` in a log line must not print it.
impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// `user:EMAIL`, `key:PREFIX` or `cli`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: Option<String>,
    pub details: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// Filters and cursor for the audit log; newest entries come first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct AuditQuery {
    /// Exact actor, e.g. `user:alice@example.com`.
    #[garde(skip)]
    pub actor: Option<String>,
    /// Exact action, e.g. `api_key.create`.
    #[garde(skip)]
    pub action: Option<String>,
    /// Only entries at or after this instant (RFC 3339).
    #[garde(skip)]
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this instant (RFC 3339).
    #[garde(skip)]
    pub until: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Page size, 1–200 (default 50).
    #[garde(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The same page with each item turned into another.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_shown_once_never_reach_debug_output() {
        let invitation = CreatedInvitation {
            invitation: Invitation {
                id: Uuid::nil(),
                email: "ann@x.test".into(),
                role: Role::Viewer,
                status: InvitationStatus::Pending,
                invited_by: "cli".into(),
                created_at: Utc::now(),
                expires_at: Utc::now(),
                accepted_at: None,
            },
            link: "https://x.test/invite?token=hunter2-token".into(),
            emailed: false,
        };
        let key = CreatedApiKey {
            key: ApiKey {
                id: Uuid::nil(),
                name: "k".into(),
                prefix: "apk_abc".into(),
                scopes: vec![],
                created_by: "cli".into(),
                created_at: Utc::now(),
                last_used_at: None,
                revoked_at: None,
            },
            secret: "apk_abc_supersecret".into(),
        };
        let shown = format!("{invitation:?} {key:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("supersecret"),
            "{shown}"
        );
        assert!(
            shown.contains("ann@x.test") && shown.contains("apk_abc"),
            "{shown}"
        );
    }

    #[test]
    fn scopes_parse_and_write_implies_read() {
        let s = Scope::parse("api_keys:write").unwrap();
        assert!(s.allows(Area::ApiKeys, Level::Read));
        assert!(s.allows(Area::ApiKeys, Level::Write));
        assert!(!s.allows(Area::Members, Level::Read));
        assert_eq!(s.to_string(), "api_keys:write");
        assert!(Scope::parse("api_keys:admin").is_none());
        assert!(Scope::parse("nope:read").is_none());
        let err = Scope::parse_list("scopes", &["tenant:read".into(), "x".into()]).unwrap_err();
        assert_eq!(err.code(), "validation_failed");
    }

    #[test]
    fn roles_grant_what_they_should() {
        let can = |role: Role, area, level| role.scopes().iter().any(|s| s.allows(area, level));
        assert!(can(Role::Admin, Area::Members, Level::Write));
        assert!(can(Role::Editor, Area::Knowledge, Level::Write));
        assert!(!can(Role::Editor, Area::ApiKeys, Level::Write));
        assert!(can(Role::Viewer, Area::Audit, Level::Read));
        assert!(Area::ALL
            .iter()
            .all(|a| !can(Role::Viewer, *a, Level::Write)));
        assert_eq!(Role::parse("editor").unwrap(), Role::Editor);
        assert!(Role::parse("root").is_err());
    }
}

/// Where a background job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to run (first time, or again after a failure and its backoff).
    Queued,
    Running,
    Succeeded,
    /// Failed on every allowed attempt; kept with its errors until retried or discarded.
    Dead,
    Discarded,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One failed attempt of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct JobAttemptError {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Job {
    pub id: Uuid,
    /// What the job does, e.g. `knowledge.ingest`.
    pub kind: String,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    /// 0–100, reported by long jobs while they run.
    pub progress: u8,
    pub payload: serde_json::Value,
    /// Every failed attempt's error, oldest first.
    pub errors: Vec<JobAttemptError>,
    pub last_error: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    /// Not before this instant (after a failure: when the next attempt is due).
    pub run_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Filters and cursor for listing jobs; newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct JobQuery {
    /// queued, running, succeeded, dead or discarded.
    #[garde(skip)]
    pub state: Option<JobState>,
    /// Exact kind, e.g. `knowledge.ingest`.
    #[garde(length(max = 100))]
    pub kind: Option<String>,
    /// `next_cursor` of the previous page.
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Page size, 1–200 (default 50).
    #[garde(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

/// How many jobs of one kind are in one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct JobCount {
    pub kind: String,
    pub state: JobState,
    pub count: u64,
}

/// The queue at a glance, for one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct JobStats {
    pub counts: Vec<JobCount>,
    /// Jobs finished in the last hour (throughput).
    pub succeeded_last_hour: u64,
    pub dead_last_hour: u64,
}

/// A recurring job: a cron expression read in the tenant's time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct JobSchedule {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    /// 5 fields (minute first) or 6 (second first).
    pub cron: String,
    pub timezone: String,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub enabled: bool,
}

mod knowledge;
pub use knowledge::*;

mod conversations;
pub use conversations::*;

mod llm;
pub use llm::*;

mod widgets;
pub use widgets::*;

mod webhooks;
pub use webhooks::*;

mod email;
pub use email::*;

mod bookings;
pub use bookings::*;

mod chatwoot;
pub use chatwoot::*;

mod google;
pub use google::*;

mod workflows;
pub use workflows::*;
