//! The visitor's side of a widget: sessions (domain lock, identity verification, token
//! rotation), their own conversations, messages, ratings. A visitor reaches nothing else: every
//! conversation is looked up by tenant, widget and visitor before the conversation service is
//! called with an `Access` that names the visitor.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, IntoActiveModel, QueryOrder, QuerySelect,
    TransactionTrait,
};

use app::error::AppError;
use app::services::{Access, Actor, ConversationService, EventSink};
use app::types::{
    Area, BusinessHours, Channel, CreateConversation, Feedback, IdentityMode, Level, Message,
    MessageRole, PostMessage, PrechatForm, PublicWidget, RateConversation, RefreshVisitorSession,
    Scope, Source, StartVisitorConversation, StartVisitorSession, TurnResult, UpdateVisitor,
    Visitor, VisitorConversation, VisitorIdentity, VisitorMessage, VisitorSession, VisitorSource,
    VisitorTranscript, WidgetSettings,
};
use app::validate::{check, normal_origin};

use super::service::{identity_secret, settings_of};
use super::tokens::{self, Signer};
use super::{live::Live, render};
use crate::agents::service::{to_message, ConversationServiceImpl, WidgetLink};
use crate::secrets::KeyRing;
use crate::store::{
    conversations, messages, tenants, widget_refresh_tokens, widget_visitors, widgets,
};
use crate::tenancy::db_error;

/// How long a refresh token works if unused.
const REFRESH_DAYS: i64 = 30;
/// Conversations a visitor's list shows.
const LIST_LIMIT: u64 = 20;

/// An authenticated visitor: their widget and row, and the `Access` services see.
pub struct VisitorCx {
    pub widget: widgets::Model,
    pub settings: WidgetSettings,
    pub visitor: widget_visitors::Model,
    pub access: Access,
}

pub struct Visitors {
    db: DatabaseConnection,
    keys: KeyRing,
    pub signer: Signer,
    conversations: Arc<ConversationServiceImpl>,
    pub live: Live,
    /// The console's own origin: the only one a widget without allowed domains works on.
    console_origin: String,
}

/// Whether a page at `origin` may use the widget.
pub fn origin_allowed(settings: &WidgetSettings, origin: &str, console_origin: &str) -> bool {
    let origin = normal_origin(origin);
    origin == normal_origin(console_origin) || settings.allowed_domains.contains(&origin)
}

/// A message within the widget's length (checked before any budget is spent on it).
pub fn check_length(cx: &VisitorCx, content: &str) -> Result<(), AppError> {
    let max = cx.settings.max_message_length as usize;
    if content.trim().chars().count() > max {
        return Err(AppError::invalid(
            "content",
            format!("a message may be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Whether `now` falls in the tenant's business hours (none set: always).
pub fn open_now(timezone: &str, hours: &[BusinessHours], now: DateTime<Utc>) -> bool {
    if hours.is_empty() {
        return true;
    }
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let local = now.with_timezone(&tz);
    let weekday = local.weekday().num_days_from_monday() as u8;
    let time = local.time();
    hours.iter().any(|h| {
        let parse = |t: &str| chrono::NaiveTime::parse_from_str(t, "%H:%M").ok();
        h.weekday == weekday
            && matches!((parse(&h.open), parse(&h.close)), (Some(o), Some(c)) if o <= time && time < c)
    })
}

fn to_visitor_conversation(m: &conversations::Model) -> VisitorConversation {
    let conv = crate::agents::service::to_conversation(m.clone());
    VisitorConversation {
        id: conv.id,
        status: conv.status,
        title: conv.title,
        csat: conv.widget.and_then(|w| w.csat),
        created_at: conv.created_at,
        updated_at: conv.updated_at,
    }
}

/// A link per document an answer drew on (titles, and addresses of fetched pages).
pub fn visitor_sources(sources: &[Source]) -> Vec<VisitorSource> {
    let mut links: Vec<VisitorSource> = Vec::new();
    for s in sources {
        let url = (s.source.starts_with("https://") || s.source.starts_with("http://"))
            .then(|| s.source.clone());
        if !links.iter().any(|k| k.title == s.document_title) {
            links.push(VisitorSource {
                title: s.document_title.clone(),
                url,
            });
        }
    }
    links
}

/// What a visitor sees of a message: no usage, steps or passages, answers as safe HTML.
pub fn to_visitor_message(m: Message) -> VisitorMessage {
    let sources = visitor_sources(&m.sources);
    let html = match m.role {
        MessageRole::User => String::new(),
        _ => render::html(&m.content),
    };
    VisitorMessage {
        id: m.id,
        role: m.role,
        content: m.content,
        html,
        sources,
        feedback: m.feedback,
        created_at: m.created_at,
    }
}

impl Visitors {
    pub fn new(
        db: DatabaseConnection,
        keys: KeyRing,
        signer: Signer,
        conversations: Arc<ConversationServiceImpl>,
        live: Live,
        console_origin: String,
    ) -> Self {
        Visitors {
            db,
            keys,
            signer,
            conversations,
            live,
            console_origin,
        }
    }

    /// The widget a snippet names.
    pub async fn widget(&self, public_id: &str) -> Result<widgets::Model, AppError> {
        if public_id.len() > 40 {
            return Err(AppError::not_found("widget"));
        }
        widgets::Entity::find()
            .filter(widgets::Column::PublicId.eq(public_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("widget"))
    }

    /// The public part of a widget's settings, with whether the tenant is open now.
    pub async fn public(&self, widget: &widgets::Model) -> Result<PublicWidget, AppError> {
        let settings = settings_of(widget);
        let tenant = tenants::Entity::find_by_id(widget.tenant_id)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("widget"))?;
        let tenant = crate::tenancy::to_tenant(tenant);
        Ok(PublicWidget {
            public_id: widget.public_id.clone(),
            name: settings.name,
            greeting: settings.greeting,
            starter_prompts: settings.starter_prompts,
            color: settings.color,
            position: settings.position,
            launcher_label: settings.launcher_label,
            avatar_url: settings.avatar_url,
            language: settings.language,
            prechat: settings.prechat,
            identity: settings.identity,
            max_message_length: settings.max_message_length,
            open: open_now(&tenant.timezone, &tenant.business_hours, Utc::now()),
            offline_message: settings.offline_message,
        })
    }

    /// The origins allowed to frame the widget's page (the console's always), as CSP sources.
    pub fn frame_ancestors(&self, settings: &WidgetSettings) -> Vec<String> {
        let mut origins = vec!["'self'".to_string(), normal_origin(&self.console_origin)];
        origins.extend(settings.allowed_domains.iter().cloned());
        origins
    }

    fn check_origin(&self, settings: &WidgetSettings, origin: &str) -> Result<(), AppError> {
        if origin_allowed(settings, origin, &self.console_origin) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "this widget may not be used on {}",
                normal_origin(origin)
            )))
        }
    }

    /// A verified visitor (found by the site's id, details refreshed) or `None` for an
    /// anonymous one; refused when the widget needs a verified visitor or the hash is wrong.
    async fn identify(
        &self,
        widget: &widgets::Model,
        mode: IdentityMode,
        identity: Option<VisitorIdentity>,
    ) -> Result<Option<VisitorIdentity>, AppError> {
        let identity = match (mode, identity) {
            (IdentityMode::Off, _) => return Ok(None),
            (IdentityMode::Enforced, None) => {
                return Err(AppError::Forbidden(
                    "this widget is for signed-in customers of the site only".into(),
                ))
            }
            (IdentityMode::Optional, None) => return Ok(None),
            (_, Some(identity)) => identity,
        };
        let secret = identity_secret(&self.keys, widget)
            .ok_or_else(|| AppError::Unavailable("identity verification is unavailable".into()))?;
        if tokens::identity_matches(&secret, identity.id.trim(), &identity.hash) {
            Ok(Some(identity))
        } else {
            metrics::counter!("widget_identity_rejections_total").increment(1);
            tracing::warn!(widget = %widget.public_id, "a visitor's identity hash did not match");
            Err(AppError::Forbidden(
                "the visitor's identity could not be verified".into(),
            ))
        }
    }

    async fn visitor_row(
        &self,
        widget: &widgets::Model,
        identity: Option<VisitorIdentity>,
    ) -> Result<widget_visitors::Model, AppError> {
        let now = Utc::now();
        let Some(identity) = identity else {
            return widget_visitors::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(widget.tenant_id),
                widget_id: Set(widget.id),
                external_id: Set(None),
                name: Set(None),
                email: Set(None),
                verified: Set(false),
                created_at: Set(now),
                last_seen_at: Set(now),
            }
            .insert(&self.db)
            .await
            .map_err(db_error);
        };
        let external = identity.id.trim().to_string();
        let email = identity.email.map(|e| e.trim().to_lowercase());
        let name = identity.name.map(|n| n.trim().to_string());
        let found = widget_visitors::Entity::find()
            .filter(widget_visitors::Column::WidgetId.eq(widget.id))
            .filter(widget_visitors::Column::ExternalId.eq(external.clone()))
            .one(&self.db)
            .await
            .map_err(db_error)?;
        if let Some(found) = found {
            let mut active = found.into_active_model();
            if name.is_some() {
                active.name = Set(name);
            }
            if email.is_some() {
                active.email = Set(email);
            }
            active.last_seen_at = Set(now);
            return active.update(&self.db).await.map_err(db_error);
        }
        let created = widget_visitors::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(widget.tenant_id),
            widget_id: Set(widget.id),
            external_id: Set(Some(external.clone())),
            name: Set(name),
            email: Set(email),
            verified: Set(true),
            created_at: Set(now),
            last_seen_at: Set(now),
        }
        .insert(&self.db)
        .await;
        match created {
            Ok(row) => Ok(row),
            // The same person opened the widget twice at once: the other request made the row.
            Err(_) => widget_visitors::Entity::find()
                .filter(widget_visitors::Column::WidgetId.eq(widget.id))
                .filter(widget_visitors::Column::ExternalId.eq(external))
                .one(&self.db)
                .await
                .map_err(db_error)?
                .ok_or_else(|| AppError::Internal("the visitor could not be saved".into())),
        }
    }

    /// A new refresh token of `family` for the visitor, with an access token.
    async fn session(
        &self,
        db: &impl ConnectionTrait,
        widget: &widgets::Model,
        visitor: &widget_visitors::Model,
        family: Uuid,
    ) -> Result<VisitorSession, AppError> {
        let (refresh, digest) = tokens::new_refresh_token();
        let now = Utc::now();
        widget_refresh_tokens::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(widget.tenant_id),
            widget_id: Set(widget.id),
            visitor_id: Set(visitor.id),
            family_id: Set(family),
            token_hash: Set(digest),
            created_at: Set(now),
            expires_at: Set(now + chrono::Duration::days(REFRESH_DAYS)),
            used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(db)
        .await
        .map_err(db_error)?;
        let access_token = self
            .signer
            .issue(widget.tenant_id, widget.id, visitor.id)
            .ok_or_else(|| AppError::Internal("the visitor's token could not be signed".into()))?;
        Ok(VisitorSession {
            access_token,
            expires_in: self.signer.ttl.as_secs(),
            refresh_token: refresh,
            visitor: visitor.to_visitor(),
            widget: self.public(widget).await?,
        })
    }

    /// Opens a session for a page at `start.origin`.
    pub async fn start(
        &self,
        public_id: &str,
        start: StartVisitorSession,
    ) -> Result<VisitorSession, AppError> {
        check(&start)?;
        let widget = self.widget(public_id).await?;
        let settings = settings_of(&widget);
        self.check_origin(&settings, &start.origin)?;
        let identity = self
            .identify(&widget, settings.identity, start.identity)
            .await?;
        let visitor = self.visitor_row(&widget, identity).await?;
        self.session(&self.db, &widget, &visitor, Uuid::now_v7())
            .await
    }

    /// Exchanges a refresh token for the next of its family. A token presented a second
    /// time revokes the family: whoever holds a copy loses the session along with the owner.
    pub async fn refresh(
        &self,
        request: RefreshVisitorSession,
    ) -> Result<VisitorSession, AppError> {
        check(&request)?;
        let digest =
            tokens::refresh_digest(&request.refresh_token).ok_or(AppError::Unauthorized)?;
        let token = widget_refresh_tokens::Entity::find()
            .filter(widget_refresh_tokens::Column::TokenHash.eq(digest))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or(AppError::Unauthorized)?;
        let now = Utc::now();
        if token.revoked_at.is_some() || token.expires_at <= now {
            return Err(AppError::Unauthorized);
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        // Conditional, so two requests racing with one token cannot both win.
        let used = widget_refresh_tokens::Entity::update_many()
            .col_expr(widget_refresh_tokens::Column::UsedAt, Expr::value(now))
            .filter(widget_refresh_tokens::Column::Id.eq(token.id))
            .filter(widget_refresh_tokens::Column::UsedAt.is_null())
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if used.rows_affected == 0 {
            drop(txn);
            self.revoke_family(token.family_id).await?;
            metrics::counter!("widget_refresh_reuse_total").increment(1);
            tracing::warn!(family = %token.family_id, "a used refresh token came back; its family is revoked");
            return Err(AppError::Unauthorized);
        }
        let widget = widgets::Entity::find_by_id(token.widget_id)
            .filter(widgets::Column::TenantId.eq(token.tenant_id))
            .one(&txn)
            .await
            .map_err(db_error)?
            .ok_or(AppError::Unauthorized)?;
        let settings = settings_of(&widget);
        self.check_origin(&settings, &request.origin)?;
        let visitor = widget_visitors::Entity::find_by_id(token.visitor_id)
            .filter(widget_visitors::Column::WidgetId.eq(widget.id))
            .one(&txn)
            .await
            .map_err(db_error)?
            .ok_or(AppError::Unauthorized)?;
        if settings.identity == IdentityMode::Enforced && !visitor.verified {
            return Err(AppError::Forbidden(
                "this widget is for signed-in customers of the site only".into(),
            ));
        }
        let session = self
            .session(&txn, &widget, &visitor, token.family_id)
            .await?;
        txn.commit().await.map_err(db_error)?;
        Ok(session)
    }

    async fn revoke_family(&self, family: Uuid) -> Result<(), AppError> {
        widget_refresh_tokens::Entity::update_many()
            .col_expr(
                widget_refresh_tokens::Column::RevokedAt,
                Expr::value(Utc::now()),
            )
            .filter(widget_refresh_tokens::Column::FamilyId.eq(family))
            .filter(widget_refresh_tokens::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The visitor an access token names, while their widget and row exist.
    pub async fn authenticate(&self, token: &str) -> Result<VisitorCx, AppError> {
        let claims = self.signer.verify(token).ok_or(AppError::Unauthorized)?;
        let widget = widgets::Entity::find_by_id(claims.wid)
            .filter(widgets::Column::TenantId.eq(claims.tid))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or(AppError::Unauthorized)?;
        let visitor = widget_visitors::Entity::find_by_id(claims.sub)
            .filter(widget_visitors::Column::WidgetId.eq(widget.id))
            .filter(widget_visitors::Column::TenantId.eq(claims.tid))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or(AppError::Unauthorized)?;
        let access = Access {
            tenant_id: widget.tenant_id,
            actor: Actor::Visitor {
                id: visitor.id,
                widget_id: widget.id,
            },
            role: None,
            scopes: vec![Scope {
                area: Area::Conversations,
                level: Level::Write,
            }],
            ip: None,
        };
        Ok(VisitorCx {
            settings: settings_of(&widget),
            widget,
            visitor,
            access,
        })
    }

    /// The pre-chat form's answers (anonymous visitors only).
    pub async fn update(&self, cx: &VisitorCx, update: UpdateVisitor) -> Result<Visitor, AppError> {
        check(&update)?;
        if cx.visitor.verified {
            return Err(AppError::Conflict(
                "a verified visitor's details come from the site".into(),
            ));
        }
        let mut active = cx.visitor.clone().into_active_model();
        active.name = Set(update.name.map(|n| n.trim().to_string()));
        active.email = Set(update.email.map(|e| e.trim().to_lowercase()));
        active.last_seen_at = Set(Utc::now());
        let row = active.update(&self.db).await.map_err(db_error)?;
        Ok(row.to_visitor())
    }

    /// The visitor's conversations on this widget, newest first (verified visitors: from
    /// every device).
    pub async fn list(&self, cx: &VisitorCx) -> Result<Vec<VisitorConversation>, AppError> {
        Ok(self
            .own_conversations(cx)
            .order_by_desc(conversations::Column::Id)
            .limit(LIST_LIMIT)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .iter()
            .map(to_visitor_conversation)
            .collect())
    }

    fn own_conversations(&self, cx: &VisitorCx) -> sea_orm::Select<conversations::Entity> {
        conversations::Entity::find()
            .filter(conversations::Column::TenantId.eq(cx.widget.tenant_id))
            .filter(conversations::Column::WidgetId.eq(cx.widget.id))
            .filter(conversations::Column::VisitorId.eq(cx.visitor.id))
    }

    /// One of the visitor's own conversations; any other is "not found".
    pub async fn own(&self, cx: &VisitorCx, id: Uuid) -> Result<conversations::Model, AppError> {
        self.own_conversations(cx)
            .filter(conversations::Column::Id.eq(id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("conversation"))
    }

    pub async fn start_conversation(
        &self,
        cx: &VisitorCx,
        start: StartVisitorConversation,
    ) -> Result<VisitorConversation, AppError> {
        check(&start)?;
        if cx.settings.prechat == PrechatForm::Required
            && (cx.visitor.name.is_none() || cx.visitor.email.is_none())
        {
            return Err(AppError::invalid(
                "visitor",
                "this widget asks for a name and an email first",
            ));
        }
        let link = WidgetLink {
            widget_id: cx.widget.id,
            visitor_id: cx.visitor.id,
            page_url: start.page_url.map(|u| u.trim().to_string()),
            agent: cx.settings.agent.clone(),
            verified_email: cx
                .visitor
                .verified
                .then(|| cx.visitor.email.clone())
                .flatten(),
        };
        let create = CreateConversation {
            channel: Some(Channel::Widget),
            title: None,
            history: Vec::new(),
        };
        let conv = self
            .conversations
            .create_linked(&cx.access, create, Some(link))
            .await?;
        let row = self.own(cx, conv.id).await?;
        Ok(to_visitor_conversation(&row))
    }

    pub async fn transcript(
        &self,
        cx: &VisitorCx,
        id: Uuid,
    ) -> Result<VisitorTranscript, AppError> {
        let conv = self.own(cx, id).await?;
        let rows = messages::Entity::find()
            .filter(messages::Column::TenantId.eq(conv.tenant_id))
            .filter(messages::Column::ConversationId.eq(conv.id))
            .order_by_asc(messages::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(VisitorTranscript {
            conversation: to_visitor_conversation(&conv),
            messages: rows
                .into_iter()
                .map(|m| to_visitor_message(to_message(m)))
                .collect(),
        })
    }

    /// Messages of the visitor's conversation written after `after` (all when `None`).
    pub async fn messages_after(
        &self,
        cx: &VisitorCx,
        id: Uuid,
        after: Option<Uuid>,
    ) -> Result<(VisitorConversation, Vec<VisitorMessage>), AppError> {
        let conv = self.own(cx, id).await?;
        let mut select = messages::Entity::find()
            .filter(messages::Column::TenantId.eq(conv.tenant_id))
            .filter(messages::Column::ConversationId.eq(conv.id));
        if let Some(after) = after {
            select = select.filter(messages::Column::Id.gt(after));
        }
        let rows = select
            .order_by_asc(messages::Column::Id)
            .limit(100)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok((
            to_visitor_conversation(&conv),
            rows.into_iter()
                .map(|m| to_visitor_message(to_message(m)))
                .collect(),
        ))
    }

    /// Sends the visitor's message; the answer's events go to `events`.
    pub async fn post(
        &self,
        cx: &VisitorCx,
        id: Uuid,
        content: String,
        events: EventSink,
    ) -> Result<TurnResult, AppError> {
        self.own(cx, id).await?;
        check_length(cx, &content)?;
        self.conversations
            .post_message(
                &cx.access,
                id,
                PostMessage {
                    content,
                    stream: true,
                },
                events,
            )
            .await
    }

    pub async fn rate_message(
        &self,
        cx: &VisitorCx,
        id: Uuid,
        message_id: Uuid,
        feedback: Feedback,
    ) -> Result<VisitorMessage, AppError> {
        self.own(cx, id).await?;
        let message = self
            .conversations
            .rate_message(&cx.access, id, message_id, feedback)
            .await?;
        Ok(to_visitor_message(message))
    }

    pub async fn rate_conversation(
        &self,
        cx: &VisitorCx,
        id: Uuid,
        rating: RateConversation,
    ) -> Result<VisitorConversation, AppError> {
        check(&rating)?;
        let conv = self.own(cx, id).await?;
        let mut active = conv.into_active_model();
        active.csat = Set(Some(i16::from(rating.score)));
        active.csat_comment = Set(rating.comment.map(|c| c.trim().to_string()));
        let row = active.update(&self.db).await.map_err(db_error)?;
        Ok(to_visitor_conversation(&row))
    }

    /// Waits up to `wait` for a change to the conversation (locally at once, from other
    /// instances within [`super::live::POLL`]); returns whether one was seen.
    pub async fn wait_for_change(
        &self,
        cx: &VisitorCx,
        id: Uuid,
        seen: &mut Option<i64>,
        wait: Duration,
    ) -> bool {
        let mut local = self.live.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let stamp = self.live.stamp(cx.widget.tenant_id, id).await;
            if stamp.is_some() && stamp != *seen {
                *seen = stamp;
                return true;
            }
            let until = (tokio::time::Instant::now() + super::live::POLL).min(deadline);
            // Until this conversation changes here, the poll is due, or the deadline passes;
            // other conversations' changes do not cost a look at the store.
            loop {
                tokio::select! {
                    changed = local.recv() => match changed {
                        Ok(c) if c != id => continue,
                        _ => break,
                    },
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(weekday: u8, open: &str, close: &str) -> BusinessHours {
        BusinessHours {
            weekday,
            open: open.into(),
            close: close.into(),
        }
    }

    #[test]
    fn business_hours_are_read_in_the_tenants_time_zone() {
        // 2026-12-07 is a Monday; 08:30 UTC is 09:30 in Berlin.
        let monday = "2026-12-07T08:30:00Z".parse().unwrap();
        let week = [hours(0, "09:00", "17:00")];
        assert!(open_now("Europe/Berlin", &week, monday));
        assert!(!open_now("UTC", &week, monday));
        assert!(!open_now(
            "Europe/Berlin",
            &[hours(1, "00:00", "23:59")],
            monday
        ));
        assert!(open_now("UTC", &[], monday), "no hours set: always open");
    }

    #[test]
    fn only_listed_origins_and_the_console_may_embed() {
        let settings = WidgetSettings {
            allowed_domains: vec!["https://shop.example".into()],
            ..Default::default()
        };
        let console = "http://127.0.0.1:3000";
        assert!(origin_allowed(&settings, "https://shop.example/", console));
        assert!(origin_allowed(&settings, "HTTPS://SHOP.EXAMPLE", console));
        assert!(origin_allowed(&settings, "http://127.0.0.1:3000", console));
        assert!(!origin_allowed(&settings, "https://evil.example", console));
        assert!(!origin_allowed(&settings, "http://shop.example", console));
        assert!(!origin_allowed(
            &settings,
            "https://shop.example.evil",
            console
        ));
        let none = WidgetSettings::default();
        assert!(!origin_allowed(&none, "https://shop.example", console));
    }
}
