//! The command line: serve, migrate, and the operator's admin commands on the same database.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sea_orm_migration::MigratorTrait;

use app::error::AppError;
use app::types::{CreateApiKey, CreateUser, Role, Scope, SearchMode};

use crate::config::Config;
use crate::http::tenant_policy::TenantLimits;
use crate::startup::Application;
use crate::store;
use crate::tenancy::{self, TenancyServiceImpl};
use app::services::TenancyService;

#[derive(Parser)]
#[command(
    name = "server",
    version,
    about = "The agent platform: console, REST API and admin CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the web server (the default)
    Serve,
    /// Apply pending database migrations (or roll the last one back)
    Migrate {
        /// Roll back the most recent migration instead
        #[arg(long)]
        down: bool,
    },
    /// Manage tenants
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Run a job worker without the web server (set JOBS_IN_PROCESS=false on `serve` then);
    /// SIGTERM lets running jobs finish for JOB_SHUTDOWN_GRACE_SECS and hands back the rest
    Worker,
    /// Measure parts of the platform on the configured database
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Measure quality
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Keys of the stored secrets (tenants' LLM API keys)
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Extract one document read from stdin (the platform runs this as a child process)
    #[command(hide = true)]
    ExtractDocument(crate::rag::sandbox::ChildArgs),
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret with the current (first) key of SECRETS_KEYS; run it
    /// after putting a new key first and restarting every instance, then drop the old key
    Rotate,
    /// Print a new random key (id:base64) to put first in SECRETS_KEYS
    NewKey {
        /// The key's id (default: k and the date and time)
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Retrieval quality on a BEIR-layout dataset (corpus.jsonl, queries.jsonl, qrels/test.tsv):
    /// ingests it into a scratch tenant in a temporary folder, prints nDCG@10, Recall@100 and
    /// MRR@10 per search mode
    Retrieval {
        /// The dataset's folder
        #[arg(long)]
        dataset: std::path::PathBuf,
        /// Chunk length in tokens
        #[arg(long, default_value_t = 256)]
        chunk_size: u32,
        /// Only the first N judged queries
        #[arg(long)]
        queries: Option<usize>,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Chat turns: server-side overhead per turn and added latency to the first streamed
    /// token, against a fake LLM that answers at once (scratch database, temporary folder)
    Chat {
        /// Conversations talking at once
        #[arg(long, default_value_t = 50)]
        conversations: usize,
        /// JSON turns per conversation (each also streams one more)
        #[arg(long, default_value_t = 10)]
        turns: usize,
    },
    /// Chatwoot webhooks: acknowledgement latency at a steady rate while the turns they start
    /// run in the same process (fake LLM and fake Chatwoot on loopback, scratch database)
    Chatwoot {
        /// Signed webhooks sent
        #[arg(long, default_value_t = 1000)]
        webhooks: usize,
        /// Webhooks per second
        #[arg(long, default_value_t = 200)]
        rate: usize,
        /// Chatwoot conversations they are spread over
        #[arg(long, default_value_t = 50)]
        conversations: usize,
    },
    /// Workflows: engine overhead per step, and runs per second of a 10-step workflow with
    /// every step checkpointed (on the configured database)
    Workflows {
        /// Runs to start and drain
        #[arg(long, default_value_t = 500)]
        runs: usize,
    },
    /// Queue throughput (no-op jobs per second) and enqueue-to-start latency at idle
    Jobs {
        /// No-op jobs to drain for the throughput figure
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Single jobs enqueued one at a time for the latency figure
        #[arg(long, default_value_t = 100)]
        samples: usize,
    },
    /// Knowledge: ingestion chunks/s with the local model, then search latency per mode at
    /// each corpus size under concurrent queries (synthetic, seeded corpora; temporary folder)
    Knowledge {
        /// Documents ingested for the throughput figure (about 10 chunks each)
        #[arg(long, default_value_t = 100)]
        documents: usize,
        /// Corpus sizes in chunks
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        chunks: Vec<usize>,
        /// Queries in flight at once
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Queries per mode and size
        #[arg(long, default_value_t = 400)]
        queries: usize,
        /// Search modes to time, of fulltext, vector, hybrid
        #[arg(long, value_delimiter = ',', default_value = "fulltext,vector,hybrid")]
        modes: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant
    Create {
        /// URL-safe identifier: lowercase letters, digits, hyphens
        slug: String,
        /// Display name (defaults to the slug)
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants
    List,
    /// Delete a tenant and everything it owns: members' access, keys, jobs, knowledge bases
    /// with their documents and vectors, audit trail
    Delete {
        slug: String,
        /// Really delete (without it, nothing happens)
        #[arg(long)]
        yes: bool,
    },
    /// Show or set a tenant's rate limits (requests per minute); unset figures use the defaults
    Limits {
        slug: String,
        /// Per API key or console user, reads
        #[arg(long)]
        read: Option<u32>,
        /// Per API key or console user, writes
        #[arg(long)]
        write: Option<u32>,
        /// For the whole tenant
        #[arg(long)]
        tenant: Option<u32>,
        /// Drop the tenant's own figures and use the defaults again
        #[arg(long, conflicts_with_all = ["read", "write", "tenant"])]
        clear: bool,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user in a tenant and print a temporary password
    Create {
        email: String,
        #[arg(long)]
        tenant: String,
        /// owner, admin, editor or viewer
        #[arg(long)]
        role: String,
        /// Display name (defaults to the part of the email before @)
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; the key is printed once, alone on the last line
    Create {
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes such as knowledge:read,api_keys:write (default: all)
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate { down } => {
            let db = store::connect(&config).await?;
            if down {
                migration::Migrator::down(&db, Some(1)).await?;
                println!("rolled back the last migration");
            } else {
                migration::Migrator::up(&db, None).await?;
                println!("database is up to date");
            }
            Ok(())
        }
        Command::Tenant(cmd) => tenant(cmd, config).await,
        Command::User(cmd) => user(cmd, config).await,
        Command::Apikey(cmd) => apikey(cmd, config).await,
        Command::Worker => {
            let db = store::connect(&config).await?;
            store::migrate(&db).await?;
            let knowledge = crate::rag::Knowledge::new(config.knowledge.clone(), config.circuit);
            knowledge
                .vectors
                .check()
                .await
                .context("reaching the knowledge store (LANCEDB_URI, S3_*)")?;
            let keys = crate::secrets::KeyRing::load(&config)?;
            let providers = crate::integrations::email_providers::EmailProviders::new(
                config.email_apis.clone(),
                config.circuit,
                keys.clone(),
            )?;
            let mailer = crate::integrations::email::mailer(&config)?;
            let (kv, _) = crate::kv::Kv::from_config(&config)
                .await
                .context("connecting to Redis (REDIS_URL)")?;
            // Channels' jobs run the agents' turns here too.
            let agents = crate::startup::Agents::build(
                &config,
                &db,
                &kv,
                &knowledge,
                &keys,
                mailer.is_some(),
            )?;
            let registry = crate::startup::with_channels(
                crate::jobs::registry(&knowledge, mailer, Some(keys.clone()), Some(providers)),
                &config,
                &keys,
                agents.conversations,
                agents.google_sync,
            )?;
            let worker = crate::jobs::Worker::new(db, registry, config.jobs.clone());
            println!(
                "job worker {} running; Ctrl-C or SIGTERM stops it",
                worker.id()
            );
            worker.run(shutdown_signal()).await;
            Ok(())
        }
        Command::Bench(BenchCommand::Chat {
            conversations,
            turns,
        }) => crate::agents::bench::run(&config, conversations, turns).await,
        Command::Bench(BenchCommand::Chatwoot {
            webhooks,
            rate,
            conversations,
        }) => {
            crate::integrations::chatwoot::bench::run(&config, webhooks, rate, conversations).await
        }
        Command::Bench(BenchCommand::Workflows { runs }) => {
            crate::workflows::bench::run(&config, runs).await
        }
        Command::Bench(BenchCommand::Jobs { count, samples }) => {
            crate::jobs::bench::run(&config, count, samples).await
        }
        Command::Bench(BenchCommand::Knowledge {
            documents,
            chunks,
            concurrency,
            queries,
            modes,
        }) => {
            let modes = modes
                .iter()
                .map(|m| {
                    SearchMode::ALL
                        .into_iter()
                        .find(|mode| mode.as_str() == m.as_str())
                        .ok_or_else(|| {
                            anyhow::anyhow!("unknown mode {m}: fulltext, vector or hybrid")
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let plan = crate::rag::bench::Plan {
                documents,
                sizes: chunks,
                concurrency,
                queries,
                modes,
            };
            crate::rag::bench::run(&config, &plan).await
        }
        Command::Eval(EvalCommand::Retrieval {
            dataset,
            chunk_size,
            queries,
        }) => crate::rag::eval::run(&config, &dataset, chunk_size, queries).await,
        Command::Secrets(cmd) => secrets(cmd, config).await,
        // `main` runs it before starting a runtime or reading the configuration.
        Command::ExtractDocument(args) => crate::rag::sandbox::child(args),
    }
}

async fn secrets(cmd: SecretsCommand, config: Config) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::NewKey { id } => {
            let id = id.unwrap_or_else(crate::secrets::new_key_id);
            println!("{}", crate::secrets::new_key(&id)?.as_str());
        }
        SecretsCommand::Rotate => {
            let keys = crate::secrets::KeyRing::load(&config)?;
            let db = store::connect(&config).await?;
            store::migrate(&db).await?;
            let rotation = crate::secrets::rotate_all(&db, &keys).await?;
            crate::store::audit_log::Record {
                tenant_id: None,
                actor: "cli".into(),
                action: "secrets.rotate",
                target: format!("key:{}", keys.current_id()),
                ip: None,
                details: Some(serde_json::json!({
                    "rewritten": rotation.rewritten,
                    "failed": rotation.failed.len(),
                })),
            }
            .write(&db)
            .await?;
            println!(
                "re-encrypted {} secrets with key '{}' ({} already used it)",
                rotation.rewritten,
                keys.current_id(),
                rotation.current
            );
            for failure in &rotation.failed {
                eprintln!("not re-encrypted: {failure}");
            }
            anyhow::ensure!(
                rotation.failed.is_empty(),
                "{} secrets could not be re-encrypted; keep the old keys until they are",
                rotation.failed.len()
            );
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let url = config.console_url();
    let credentials = config.data_dir.join("demo-credentials.txt");
    let app = Application::build(config).await?;
    tracing::info!(%url, "serving");
    println!("Agent platform listening on {url}");
    if credentials.exists() {
        println!(
            "Sign in at {url}/login (demo tenant credentials: {})",
            credentials.display()
        );
    }
    app.run(shutdown_signal()).await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM. The SIGTERM handler is installed when this is called, not
/// when the future is first polled: a worker busy with jobs before it polls its shutdown
/// future must not die of the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
}

/// A service error as the operator should read it.
fn user_error(e: AppError) -> anyhow::Error {
    anyhow::anyhow!(e.user_message())
}

async fn db_and_service(
    config: &Config,
) -> anyhow::Result<(sea_orm::DatabaseConnection, TenancyServiceImpl)> {
    let db = store::connect(config).await?;
    store::migrate(&db).await?;
    let (kv, _) = crate::kv::Kv::from_config(config).await?;
    let invites = tenancy::Invites {
        console_url: config.console_url(),
        mail: None,
    };
    Ok((db.clone(), TenancyServiceImpl::new(db, kv, invites)))
}

async fn tenant_id(db: &sea_orm::DatabaseConnection, slug: &str) -> anyhow::Result<uuid::Uuid> {
    tenancy::find_by_slug(db, slug)
        .await?
        .map(|t| t.id)
        .ok_or_else(|| anyhow::anyhow!("no tenant with slug '{slug}' (see `server tenant list`)"))
}

async fn tenant(cmd: TenantCommand, config: Config) -> anyhow::Result<()> {
    let (db, _) = db_and_service(&config).await?;
    match cmd {
        TenantCommand::Limits {
            slug,
            read,
            write,
            tenant,
            clear,
        } => {
            let id = tenant_id(&db, &slug).await?;
            let change = (read, write, tenant);
            let limits = if clear || change != (None, None, None) {
                let mut limits = if clear {
                    TenantLimits::default()
                } else {
                    tenancy::rate_limits(&db, id).await?
                };
                limits.read_per_minute = read.or(limits.read_per_minute);
                limits.write_per_minute = write.or(limits.write_per_minute);
                limits.tenant_per_minute = tenant.or(limits.tenant_per_minute);
                tenancy::set_rate_limits(&db, id, limits)
                    .await
                    .map_err(user_error)?;
                let (kv, _) = crate::kv::Kv::from_config(&config).await?;
                crate::http::tenant_policy::forget(&kv, id).await;
                limits
            } else {
                tenancy::rate_limits(&db, id).await?
            };
            let d = config.rate_limits;
            let show = |own: Option<u32>, default: u32| match own {
                Some(n) => format!("{n}/min"),
                None => format!("{default}/min (default)"),
            };
            println!("rate limits of {slug}:");
            println!(
                "  reads per key or user:  {}",
                show(limits.read_per_minute, d.read)
            );
            println!(
                "  writes per key or user: {}",
                show(limits.write_per_minute, d.write)
            );
            println!(
                "  whole tenant:           {}",
                show(limits.tenant_per_minute, d.tenant)
            );
        }
        TenantCommand::Create { slug, name } => {
            let t = tenancy::create_tenant(&db, &slug, name.as_deref().unwrap_or(&slug))
                .await
                .map_err(user_error)?;
            println!("created tenant {} ({}) id {}", t.slug, t.name, t.id);
        }
        TenantCommand::Delete { slug, yes } => {
            let id = tenant_id(&db, &slug).await?;
            anyhow::ensure!(
                yes,
                "this deletes tenant {slug} and all its data for good; add --yes to do it"
            );
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
            let prefixes: Vec<String> = store::api_keys::Entity::find()
                .filter(store::api_keys::Column::TenantId.eq(id))
                .all(&db)
                .await?
                .into_iter()
                .map(|k| k.prefix)
                .collect();
            store::tenants::Entity::delete_by_id(id).exec(&db).await?;
            crate::store::audit_log::Record {
                tenant_id: None,
                actor: "cli".into(),
                action: "tenant.delete",
                target: id.to_string(),
                ip: None,
                details: Some(serde_json::json!({ "slug": slug })),
            }
            .write(&db)
            .await?;
            let knowledge = crate::rag::Knowledge::new(config.knowledge.clone(), config.circuit);
            knowledge.vectors.drop_tenant(id).await?;
            let (kv, _) = crate::kv::Kv::from_config(&config).await?;
            crate::http::tenant_policy::forget(&kv, id).await;
            // Servers sharing this store (Redis) stop accepting the tenant's keys at once.
            for prefix in &prefixes {
                crate::auth::forget_key(&kv, prefix).await;
            }
            println!("deleted tenant {slug} ({id}) and its data");
        }
        TenantCommand::List => {
            let tenants = tenancy::list_tenants(&db).await?;
            if tenants.is_empty() {
                println!("no tenants");
            }
            for t in tenants {
                println!("{}\t{}\t{}", t.slug, t.name, t.id);
            }
        }
    }
    Ok(())
}

async fn user(cmd: UserCommand, config: Config) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let db = store::connect(&config).await?;
    store::migrate(&db).await?;
    let UserCommand::Create {
        email,
        tenant,
        role,
        name,
    } = cmd;
    let tenant_id = tenant_id(&db, &tenant).await?;
    let role = Role::parse(&role).map_err(user_error)?;
    let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    let create = CreateUser { email, name, role };
    let done = tenancy::bootstrap_member(&db, tenant_id, create, true)
        .await
        .map_err(user_error)?;
    match done.password {
        Some(password) => println!(
            "created {} as {} of {tenant}; temporary password (they choose their own at first sign-in):\n{}",
            done.member.email,
            role.as_str(),
            password.expose_secret()
        ),
        None => println!(
            "{} already has an account; added as {} of {tenant} (their password is unchanged)",
            done.member.email,
            role.as_str()
        ),
    }
    Ok(())
}

async fn apikey(cmd: ApiKeyCommand, config: Config) -> anyhow::Result<()> {
    let (db, service) = db_and_service(&config).await?;
    let ApiKeyCommand::Create {
        tenant,
        scopes,
        name,
    } = cmd;
    let access = tenancy::cli_access(tenant_id(&db, &tenant).await?);
    let scopes = if scopes.is_empty() {
        Scope::all().iter().map(ToString::to_string).collect()
    } else {
        scopes
    };
    let created = service
        .create_api_key(&access, CreateApiKey { name, scopes })
        .await
        .map_err(user_error)?;
    println!(
        "created API key {} for {tenant} with {}; it is shown only now:",
        created.key.prefix,
        created.key.scopes.join(",")
    );
    println!("{}", created.secret);
    Ok(())
}
