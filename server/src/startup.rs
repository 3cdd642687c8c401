//! Building and running the HTTP application; what `server serve` and the tests both use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use leptos::prelude::LeptosOptions;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower_sessions::session_store::ExpiredDeletion;

use app::services::{Services, Upload};
use app::types::{CreateKnowledgeBase, CreateRouterRule, CreateUser, DocumentMeta, Role, RuleKind};

use crate::agents::{self, service::ConversationServiceImpl};
use crate::auth::{AccountServiceImpl, SessionBackend};
use crate::config::Config;
use crate::integrations::bookings::BookingServiceImpl;
use crate::integrations::calendar::{BuiltInCalendar, Calendar};
use crate::integrations::chatwoot::service::ChatwootServiceImpl;
use crate::integrations::email::{self, EmailQueue, Mailer};
use crate::integrations::email_providers::{EmailProviders, EmailSettingsServiceImpl};
use crate::integrations::google::api::GoogleApi;
use crate::integrations::google::calendar::TenantCalendar;
use crate::integrations::google::sync::GoogleSync;
use crate::integrations::google::{GoogleOAuth, GoogleServiceImpl};
use crate::integrations::webhooks::service::WebhookServiceImpl;
use crate::jobs::{self, service::JobServiceImpl, Worker};
use crate::kv::Kv;
use crate::llm::{settings::LlmSettingsServiceImpl, Providers};
use crate::rag::service::KnowledgeServiceImpl;
use crate::rag::Knowledge;
use crate::state::AppState;
use crate::store;
use crate::tenancy::{self, Invites, TenancyServiceImpl};
use crate::widget::{live::Live, tokens::Signer, Visitors, WidgetServiceImpl};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// Delivers `email.send` jobs in the in-process worker (`SMTP_URL`).
    mailer: Option<Arc<dyn Mailer>>,
    /// Tenants' own email providers, for the same worker.
    email_providers: EmailProviders,
    /// The agents, for the channels' jobs in the same worker.
    conversations: Arc<ConversationServiceImpl>,
    google_sync: GoogleSync,
}

/// The agents and what they use: what `server serve` and `server worker` both build.
pub struct Agents {
    pub conversations: Arc<ConversationServiceImpl>,
    pub knowledge: Arc<dyn app::services::KnowledgeService>,
    pub calendar: Arc<dyn Calendar>,
    pub providers: Providers,
    pub live: Live,
    /// The platform's Google client (`GOOGLE_CLIENT_ID`), for connecting tenants' calendars.
    pub google: Option<Arc<GoogleOAuth>>,
    pub google_sync: GoogleSync,
}

impl Agents {
    pub fn build(
        config: &Config,
        db: &DatabaseConnection,
        kv: &Kv,
        knowledge: &Arc<Knowledge>,
        keys: &crate::secrets::KeyRing,
        can_email: bool,
    ) -> anyhow::Result<Agents> {
        let knowledge_service: Arc<dyn app::services::KnowledgeService> = Arc::new(
            KnowledgeServiceImpl::new(db.clone(), kv.clone(), knowledge.clone()),
        );
        let providers = Providers::new(
            config.llm.clone(),
            config.circuit,
            keys.clone(),
            config.knowledge.fetch_allow_private,
        );
        let live = Live::new(kv.clone());
        let google = match &config.google {
            Some(google) => Some(Arc::new(
                GoogleOAuth::new(google, &config.console_url(), db.clone(), keys.clone())
                    .context("preparing the Google client (GOOGLE_*)")?,
            )),
            None => None,
        };
        let google_api = match (&google, &config.google) {
            (Some(oauth), Some(settings)) => Some(
                GoogleApi::new(oauth.clone(), &settings.api_url, config.circuit)
                    .context("preparing the Google Calendar client")?,
            ),
            _ => None,
        };
        let built_in = Arc::new(BuiltInCalendar::new(db.clone(), can_email));
        let calendar: Arc<dyn Calendar> = Arc::new(TenantCalendar::new(
            db.clone(),
            built_in.clone(),
            google_api.clone(),
        ));
        let google_sync = GoogleSync::new(db.clone(), google_api, built_in);
        let runtime = Arc::new(agents::Runtime {
            llm: providers.clone(),
            knowledge: knowledge_service.clone(),
            calendar: calendar.clone(),
            email: can_email.then(|| EmailQueue::new(db.clone())),
            turn_lease: config.turn_lease,
            kv: kv.clone(),
            live: live.clone(),
        });
        let conversations = Arc::new(
            ConversationServiceImpl::new(db.clone(), runtime)
                .context("building the agent graph")?,
        );
        Ok(Agents {
            conversations,
            knowledge: knowledge_service,
            calendar,
            providers,
            live,
            google,
            google_sync,
        })
    }
}

/// The jobs of the channels (Chatwoot), which run the agents' turns, and of the calendar
/// (Google's sync) added to `registry`.
pub fn with_channels(
    registry: jobs::Registry,
    config: &Config,
    keys: &crate::secrets::KeyRing,
    conversations: Arc<ConversationServiceImpl>,
    google_sync: GoogleSync,
) -> anyhow::Result<jobs::Registry> {
    use crate::integrations::chatwoot::{client::ChatwootApi, job};
    let allow_private = config.knowledge.fetch_allow_private;
    let transcriber = config
        .transcribe
        .clone()
        .map(|t| crate::llm::transcribe::Transcriber::new(t, config.circuit));
    let rt = conversations.runtime();
    let workflows = Arc::new(crate::workflows::nodes::WorkflowRuntime::new(
        conversations.db().clone(),
        conversations.clone(),
        keys.clone(),
        allow_private,
    )?);
    use crate::workflows::service::{TriggeredRun, WorkflowServiceImpl};
    let service = Arc::new(WorkflowServiceImpl::new(
        conversations.db().clone(),
        rt.clone(),
        keys.clone(),
        config.console_url(),
    ));
    // "Run a workflow" steps start and cancel runs through the same service.
    let _ = workflows.service.set(service.clone());
    Ok(registry
        .with(crate::workflows::run::RunWorkflow::new(workflows))
        .with(TriggeredRun::schedules(service.clone()))
        .with(TriggeredRun::events(service))
        .with(google_sync)
        .with(job::ChatwootEvent::new(
            conversations,
            transcriber,
            allow_private,
            config.console_url(),
        ))
        .with(job::ChatwootSend::new(
            ChatwootApi::new(config.circuit, allow_private)
                .context("preparing the Chatwoot client")?,
            keys.clone(),
        )))
}

impl Application {
    /// Connects and migrates the database, prepares sessions, seeds the demo tenant when the
    /// database is empty (if configured) and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let db = store::connect(&config)
            .await
            .context("connecting to the database")?;
        store::migrate(&db).await.context("running migrations")?;
        crate::widget::sweep::ensure_schedule(&db)
            .await
            .context("scheduling the widget sweep")?;
        crate::integrations::webhooks::sweep::ensure_schedule(&db)
            .await
            .context("scheduling the webhook sweep")?;
        let (kv, redis) = Kv::from_config(&config)
            .await
            .context("connecting to Redis (REDIS_URL)")?;
        let sessions = SessionBackend::new(&db, redis)
            .await
            .context("preparing the session store")?;
        tokio::spawn(
            sessions
                .clone()
                .continuously_delete_expired(Duration::from_secs(3600)),
        );
        let knowledge = Knowledge::new(config.knowledge.clone(), config.circuit);
        knowledge
            .vectors
            .check()
            .await
            .context("reaching the knowledge store (LANCEDB_URI, S3_*)")?;
        let mailer = email::mailer(&config).context("preparing SMTP (SMTP_URL)")?;
        let secret_keys = crate::secrets::KeyRing::load(&config)
            .context("loading the secret keys (SECRETS_KEYS)")?;
        let email_providers = EmailProviders::new(
            config.email_apis.clone(),
            config.circuit,
            secret_keys.clone(),
        )
        .context("preparing the email providers' clients")?;
        let Agents {
            conversations,
            knowledge: knowledge_service,
            calendar,
            providers,
            live,
            google,
            google_sync,
        } = Agents::build(
            &config,
            &db,
            &kv,
            &knowledge,
            &secret_keys,
            mailer.is_some(),
        )?;
        let workflows = Arc::new(crate::workflows::service::WorkflowServiceImpl::new(
            db.clone(),
            conversations.runtime().clone(),
            secret_keys.clone(),
            config.console_url(),
        ));
        let services = Services {
            tenancy: Arc::new(TenancyServiceImpl::new(
                db.clone(),
                kv.clone(),
                Invites {
                    console_url: config.console_url(),
                    mail: mailer.is_some().then(|| secret_keys.clone()),
                },
            )),
            account: Arc::new(AccountServiceImpl::new(db.clone())),
            jobs: Arc::new(JobServiceImpl::new(db.clone())),
            knowledge: knowledge_service,
            conversations: conversations.clone(),
            llm: Arc::new(LlmSettingsServiceImpl::new(db.clone(), providers)),
            widgets: Arc::new(WidgetServiceImpl::new(
                db.clone(),
                secret_keys.clone(),
                config.console_url(),
            )),
            email: Arc::new(EmailSettingsServiceImpl::new(
                db.clone(),
                secret_keys.clone(),
                mailer.is_some(),
            )),
            webhooks: Arc::new(WebhookServiceImpl::new(
                db.clone(),
                secret_keys.clone(),
                config.knowledge.fetch_allow_private,
            )),
            bookings: Arc::new(BookingServiceImpl::new(db.clone(), calendar)),
            google: Arc::new(GoogleServiceImpl::new(db.clone(), google.clone())),
            workflows: workflows.clone(),
            chatwoot: Arc::new(ChatwootServiceImpl::new(
                db.clone(),
                secret_keys.clone(),
                config.console_url(),
                config.knowledge.fetch_allow_private,
            )),
        };
        let visitors = Arc::new(Visitors::new(
            db.clone(),
            secret_keys.clone(),
            Signer::new(secret_keys.clone(), config.widget_token),
            conversations.clone(),
            live,
            config.console_url(),
        ));
        if config.demo_tenant {
            seed_demo_tenant(&db, &services, &config).await?;
        }
        let listener = TcpListener::bind(config.site_addr)
            .await
            .with_context(|| format!("binding {} (LEPTOS_SITE_ADDR)", config.site_addr))?;
        let addr = listener.local_addr()?;
        let leptos_options = LeptosOptions::builder()
            .output_name("agent-platform")
            .site_root(config.site_root.to_string_lossy().as_ref())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .build();
        let state = AppState {
            config: Arc::new(config),
            db,
            services,
            leptos_options,
            kv,
            knowledge,
            secret_keys,
            visitors,
            google,
            workflows,
        };
        crate::http::metrics::handle();
        let router = crate::http::router(state.clone(), sessions);
        Ok(Application {
            listener,
            router,
            state,
            mailer,
            email_providers,
            conversations,
            google_sync,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; the in-process job worker (unless `JOBS_IN_PROCESS`
    /// is off) stops with it, finishing or handing back its jobs.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let registry = with_channels(
            jobs::registry(
                &self.state.knowledge,
                self.mailer.clone(),
                Some(self.state.secret_keys.clone()),
                Some(self.email_providers.clone()),
            ),
            &self.state.config,
            &self.state.secret_keys,
            self.conversations.clone(),
            self.google_sync.clone(),
        )
        .map_err(std::io::Error::other)?;
        let worker = self.state.config.jobs_in_process.then(|| {
            let worker = Worker::new(
                self.state.db.clone(),
                registry,
                self.state.config.jobs.clone(),
            );
            let mut stopped = stopped.clone();
            tokio::spawn(worker.run(async move {
                let _ = stopped.changed().await;
            }))
        });
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        served
    }
}

pub const DEMO_EMAIL: &str = "admin@demo.local";

/// The demo tenant's knowledge base: two short documents, ingested by the worker like any
/// upload (so the knowledge page and search have something to show at once).
async fn seed_demo_knowledge(services: &Services, tenant: uuid::Uuid) -> anyhow::Result<()> {
    let access = tenancy::cli_access(tenant);
    let kb = services
        .knowledge
        .create_knowledge_base(
            &access,
            CreateKnowledgeBase {
                name: "Customer handbook".into(),
                description: Some("Opening hours, bookings, emergencies, prices.".into()),
                ..Default::default()
            },
        )
        .await?;
    let files = [
        ("handbook.md", include_str!("../demo/handbook.md")),
        ("pricing.md", include_str!("../demo/pricing.md")),
    ]
    .into_iter()
    .map(|(name, text)| Upload {
        filename: name.into(),
        content_type: Some("text/markdown".into()),
        bytes: text.as_bytes().to_vec(),
        meta: DocumentMeta {
            tags: vec!["demo".into()],
            language: Some("en".into()),
            ..Default::default()
        },
    })
    .collect();
    services
        .knowledge
        .upload_documents(&access, kb.id, files)
        .await?;
    Ok(())
}

/// The demo tenant's router rules, so the playground shows routing without an LLM.
async fn seed_demo_rules(services: &Services, tenant: uuid::Uuid) -> anyhow::Result<()> {
    let access = tenancy::cli_access(tenant);
    for (name, agent, pattern, priority) in [
        (
            "prices",
            "sales",
            "price, prices, cost, quote, how much, plan, plans",
            10,
        ),
        (
            "bookings",
            "scheduling",
            "book, booking, appointment, reschedule, cancel my, visit",
            20,
        ),
    ] {
        services
            .conversations
            .create_router_rule(
                &access,
                CreateRouterRule {
                    name: name.into(),
                    agent: agent.into(),
                    kind: RuleKind::Keyword,
                    pattern: pattern.into(),
                    priority,
                    enabled: true,
                },
            )
            .await?;
    }
    Ok(())
}

/// On an empty database: a demo tenant whose owner's password is printed once and kept in
/// `DATA_DIR/demo-credentials.txt`.
async fn seed_demo_tenant(
    db: &DatabaseConnection,
    services: &Services,
    config: &Config,
) -> anyhow::Result<()> {
    if store::tenants::Entity::find().count(db).await? > 0 {
        return Ok(());
    }
    let tenant = tenancy::create_tenant(db, "demo", "Demo Company").await?;
    // The operator's own password (printed to them, kept 0600), not a temporary one.
    let created = tenancy::bootstrap_member(
        db,
        tenant.id,
        CreateUser {
            email: DEMO_EMAIL.into(),
            name: "Demo Admin".into(),
            role: Role::Owner,
        },
        false,
    )
    .await?;
    let password = created
        .password
        .context("the demo account existed before its tenant")?;
    seed_demo_knowledge(services, tenant.id).await?;
    seed_demo_rules(services, tenant.id).await?;
    let message = format!(
        "Demo tenant created. Sign in at {}/login\n  email:    {DEMO_EMAIL}\n  password: {}\n",
        config.console_url(),
        password.expose_secret()
    );
    let file = config.data_dir.join("demo-credentials.txt");
    if let Err(e) = write_private(&config.data_dir, &file, &message) {
        tracing::warn!(error = %e, "could not save the demo credentials");
    }
    println!(
        "\n{message}  (saved in {}, readable by its owner only)\n",
        file.display()
    );
    Ok(())
}

/// Writes `text` to `file` (in `dir`, made if missing) readable and writable by its owner only
/// (0600), whatever the umask: it holds a password.
fn write_private(dir: &std::path::Path, file: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(file)?;
    // An older file keeps its mode on open: narrow it as well.
    #[cfg(unix)]
    out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    out.write_all(text.as_bytes())
}
