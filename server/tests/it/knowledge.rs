//! Knowledge bases end to end over REST: upload → ingestion job (real MiniLM through candle)
//! → LanceDB → search in every mode; replacement, deletion (also mid-ingestion), bad files,
//! fetch by URL with SSRF protection, an OpenAI-compatible embeddings endpoint and a `/rerank`
//! service (both fakes on loopback), the search cache, and tenant isolation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const PUMPS: &str = "# Pump maintenance\n\nThe centrifugal pump needs its impeller inspected every six months. \
Replace the mechanical seal when it leaks.\n\n## Bearings\n\nGrease the bearings with lithium grease every 500 hours.";
const HOURS: &str =
    "<html><head><title>Opening hours</title></head><body><nav>Home | About | Contact</nav>\
<main><h1>Opening hours</h1><p>Our showroom in Porto opens Monday to Friday from nine to six.</p>\
<p>On Saturdays we open from ten to one.</p></main><footer>Copyright ACME</footer></body></html>";
const PRICES: &str =
    "product,price,notes\nbasic plan,10 euros,for one user\nteam plan,45 euros,up to ten users\n";

async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![("JOB_POLL_MS", "50")];
    pairs.extend_from_slice(extra);
    TestApp::spawn_with(backend, &pairs).await
}

pub(crate) async fn create_kb(app: &TestApp, key: &str, body: Value) -> Value {
    json(
        app.send_json(Method::POST, "/api/v1/knowledge-bases", key, &body)
            .await,
        201,
    )
    .await
}

pub(crate) fn file(name: &str, mime: &str, bytes: impl Into<Vec<u8>>) -> Part {
    Part::bytes(bytes.into())
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap()
}

pub(crate) async fn upload(app: &TestApp, key: &str, kb: &str, form: Form) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/knowledge-bases/{kb}/documents")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn document(app: &TestApp, key: &str, kb: &str, id: &str) -> Value {
    json(
        app.get(&format!("/api/v1/knowledge-bases/{kb}/documents/{id}"), key)
            .await,
        200,
    )
    .await
}

/// Polls a document until it leaves queued/processing; returns it.
pub(crate) async fn settled(app: &TestApp, key: &str, kb: &str, id: &str) -> Value {
    for _ in 0..1200 {
        let doc = document(app, key, kb, id).await;
        if doc["status"] == "ready" || doc["status"] == "failed" {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("document {id} never settled");
}

async fn search(app: &TestApp, key: &str, kb: &str, body: Value) -> Value {
    json(
        app.send_json(
            Method::POST,
            &format!("/api/v1/knowledge-bases/{kb}/search"),
            key,
            &body,
        )
        .await,
        200,
    )
    .await
}

fn sources(result: &Value) -> Vec<String> {
    result["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn documents_are_ingested_and_found_in_every_mode() {
    for backend in backends().await {
        let app = spawn(backend, &[]).await;
        let f = app.tenant("acme").await;
        let kb = create_kb(&app, &f.key, json!({ "name": "Handbook" })).await;
        assert_eq!(kb["embedding_model"], "local/all-MiniLM-L6-v2");
        assert_eq!(kb["embedding_dim"], 384);
        let kb = kb["id"].as_str().unwrap().to_string();

        let form = Form::new()
            .part("files", file("pumps.md", "text/markdown", PUMPS))
            .part("files", file("hours.html", "text/html", HOURS))
            .part("files", file("prices.csv", "text/csv", PRICES))
            .text("tags", "manual, public")
            .text("language", "en")
            .text("metadata", r#"{"team":"support"}"#);
        let docs = json(upload(&app, &f.key, &kb, form).await, 202).await;
        let docs = docs.as_array().unwrap().clone();
        assert_eq!(docs.len(), 3);
        assert!(docs.iter().all(|d| d["status"] == "queued"));
        for d in &docs {
            let d = settled(&app, &f.key, &kb, d["id"].as_str().unwrap()).await;
            assert_eq!(d["status"], "ready", "{d}");
            assert_eq!(d["progress"], 100);
            assert!(d["chunk_count"].as_u64().unwrap() >= 1);
            assert_eq!(d["tags"], json!(["manual", "public"]));
        }
        let html = settled(&app, &f.key, &kb, docs[1]["id"].as_str().unwrap()).await;
        assert_eq!(html["title"], "Opening hours", "the page's own title");
        assert_eq!(html["format"], "html");

        for mode in ["vector", "fulltext", "hybrid"] {
            let r = search(
                &app,
                &f.key,
                &kb,
                json!({ "query": "when does the showroom open on saturday", "mode": mode }),
            )
            .await;
            assert_eq!(r["mode"], mode);
            assert_eq!(sources(&r)[0], "hours.html", "{mode}: {r}");
            let hit = &r["hits"][0];
            assert!(hit["text"].as_str().unwrap().contains("Saturdays"), "{hit}");
            assert!(
                !hit["text"].as_str().unwrap().contains("Copyright"),
                "boilerplate stripped"
            );
            assert!(hit["end"].as_u64() > hit["start"].as_u64());
            match mode {
                "vector" => assert!(hit["vector"]["rank"] == 1 && hit["fulltext"].is_null()),
                "fulltext" => assert!(hit["fulltext"]["rank"] == 1 && hit["vector"].is_null()),
                _ => {
                    assert!(
                        hit["vector"]["rank"].is_u64() && hit["fulltext"]["rank"].is_u64(),
                        "{hit}"
                    );
                    assert_eq!(r["weights"], json!([1.0, 1.0]));
                }
            }
        }
        // Semantic match without shared words; a lexical one for a rare term.
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "how much does a subscription cost", "mode": "vector" }),
        )
        .await;
        assert_eq!(sources(&r)[0], "prices.csv", "{r}");
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "lithium", "mode": "fulltext" }),
        )
        .await;
        assert_eq!(sources(&r), ["pumps.md"], "{r}");

        // A whole email pasted as the query: each leg reads what it can, and says what not.
        let mut email = String::from("Hello, when does the showroom open on saturday? ");
        for i in 0..400 {
            email.push_str(&format!("zq{i:03}x "));
        }
        let chars = email.trim().chars().count() as u64;
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": email, "mode": "fulltext" }),
        )
        .await;
        assert_eq!(sources(&r)[0], "hours.html", "{r}");
        assert_eq!(r["cut"]["query_chars"], chars, "{}", r["cut"]);
        assert!(r["cut"]["embedded_chars"].is_null(), "no vector leg ran");
        let dropped = r["cut"]["dropped_words"].as_u64().unwrap();
        assert_eq!(
            dropped,
            408 - 128,
            "408 distinct words, the first 128 matched"
        );
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": email, "mode": "vector" }),
        )
        .await;
        let read = r["cut"]["embedded_chars"].as_u64().unwrap();
        assert!(
            read > 40 && read < chars,
            "the model read the start: {read} of {chars}"
        );
        assert!(r["cut"]["dropped_words"].is_null());
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": email, "mode": "hybrid" }),
        )
        .await;
        assert!(r["cut"]["embedded_chars"].is_u64() && r["cut"]["dropped_words"].is_u64());
        assert!(sources(&r)[..3].contains(&"hours.html".to_string()), "{r}");
        let r = search(&app, &f.key, &kb, json!({ "query": "pump" })).await;
        assert!(r["cut"].is_null(), "a short query loses nothing");
        let too_long = "word ".repeat(3_201);
        let bad = problem(
            app.send_json(
                Method::POST,
                &format!("/api/v1/knowledge-bases/{kb}/search"),
                &f.key,
                &json!({ "query": too_long }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(bad["errors"][0]["field"], "query", "{bad}");
        assert!(
            bad["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("16000"),
            "{bad}"
        );

        // Filters: metadata, tags, documents; a filter nothing matches gives nothing.
        let r = search(&app, &f.key, &kb, json!({ "query": "pump", "filter": { "metadata": { "team": "support" }, "tags": ["manual"] } })).await;
        assert!(!r["hits"].as_array().unwrap().is_empty());
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "pump", "filter": { "metadata": { "team": "sales" } } }),
        )
        .await;
        assert_eq!(r["hits"], json!([]));
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "pump", "filter": { "tags": ["internal"] } }),
        )
        .await;
        assert_eq!(r["hits"], json!([]));
        let only = docs[2]["id"].as_str().unwrap();
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "pump", "filter": { "document_ids": [only] } }),
        )
        .await;
        assert_eq!(sources(&r).iter().filter(|s| *s != "prices.csv").count(), 0);
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "pump", "top_k": 1, "score_threshold": 0.99 }),
        )
        .await;
        assert_eq!(r["hits"], json!([]), "nothing scores 0.99 in RRF");

        // Listing with counts and a cursor.
        let kbs = json(app.get("/api/v1/knowledge-bases", &f.key).await, 200).await;
        assert_eq!(kbs[0]["document_count"], 3);
        assert_eq!(kbs[0]["status"], "ready");
        let page = json(
            app.get(
                &format!("/api/v1/knowledge-bases/{kb}/documents?limit=2"),
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let cursor = page["next_cursor"].as_str().unwrap();
        let rest = json(
            app.get(
                &format!("/api/v1/knowledge-bases/{kb}/documents?limit=2&cursor={cursor}"),
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(rest["items"].as_array().unwrap().len(), 1);
        assert!(rest["next_cursor"].is_null());
    }
}

/// Each document is written on its own (one fragment each); upkeep merges them before a
/// search has to open one file per document.
#[tokio::test]
async fn documents_written_one_at_a_time_are_merged_into_few_fragments() {
    for backend in backends().await {
        let app = spawn(backend, &[]).await;
        let f = app.tenant("acme").await;
        let kb = create_kb(&app, &f.key, json!({ "name": "Notes" })).await;
        let kb = kb["id"].as_str().unwrap().to_string();
        let mut form = Form::new();
        for i in 0..30 {
            let text = format!("Note {i}: parcel {i} goes out with courier number c{i}x.");
            form = form.part("files", file(&format!("note{i}.txt"), "text/plain", text));
        }
        let docs = json(upload(&app, &f.key, &kb, form).await, 202).await;
        for d in docs.as_array().unwrap() {
            let d = settled(&app, &f.key, &kb, d["id"].as_str().unwrap()).await;
            assert_eq!(d["status"], "ready", "{d}");
        }
        wait_jobs_idle(&app, f.tenant_id).await;
        let table = table_of(&app, &kb).await;
        let vectors = &app.knowledge.vectors;
        assert_eq!(vectors.count(f.tenant_id, &table).await.unwrap(), 30);
        let fragments = vectors.fragments(f.tenant_id, &table).await.unwrap();
        assert!(fragments <= 17, "30 documents left {fragments} fragments");
        for i in [0, 17, 29] {
            let q = json!({ "query": format!("c{i}x"), "mode": "fulltext" });
            let r = search(&app, &f.key, &kb, q).await;
            assert_eq!(sources(&r), [format!("note{i}.txt")], "{r}");
        }
    }
}

#[tokio::test]
async fn replacing_and_deleting_documents_swaps_their_chunks_and_drops_cached_results() {
    for backend in backends().await {
        let app = spawn(backend, &[]).await;
        let f = app.tenant("acme").await;
        let kb = create_kb(&app, &f.key, json!({ "name": "Notes" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let first = json(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part(
                    "files",
                    file("note.txt", "text/plain", "The courier is Zebulon Freight."),
                ),
            )
            .await,
            202,
        )
        .await;
        let id = first[0]["id"].as_str().unwrap().to_string();
        assert_eq!(settled(&app, &f.key, &kb, &id).await["status"], "ready");
        let q = json!({ "query": "Zebulon", "mode": "fulltext" });
        let r = search(&app, &f.key, &kb, q.clone()).await;
        assert_eq!(r["cached"], false);
        assert_eq!(sources(&r), ["note.txt"]);
        assert_eq!(search(&app, &f.key, &kb, q.clone()).await["cached"], true);

        // Same bytes again: nothing changes.
        let same = json(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part(
                    "files",
                    file("note.txt", "text/plain", "The courier is Zebulon Freight."),
                ),
            )
            .await,
            202,
        )
        .await;
        assert_eq!(same[0]["revision"], 1);
        assert_eq!(same[0]["status"], "ready");

        // New bytes under the same name replace the document.
        let second = json(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part(
                    "files",
                    file(
                        "note.txt",
                        "text/plain",
                        "The courier is now Quillon Logistics.",
                    ),
                ),
            )
            .await,
            202,
        )
        .await;
        assert_eq!(second[0]["id"], id.as_str());
        assert_eq!(second[0]["revision"], 2);
        assert_eq!(settled(&app, &f.key, &kb, &id).await["status"], "ready");
        let r = search(&app, &f.key, &kb, q.clone()).await;
        assert_eq!(
            r["cached"], false,
            "a new version of the knowledge base is not served from cache"
        );
        assert_eq!(r["hits"], json!([]), "the old chunks are gone");
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "Quillon", "mode": "fulltext" }),
        )
        .await;
        assert_eq!(sources(&r), ["note.txt"]);
        let table = table_of(&app, &kb).await;
        assert_eq!(
            app.knowledge
                .vectors
                .count(f.tenant_id, &table)
                .await
                .unwrap(),
            1
        );

        let gone = app
            .client
            .delete(app.url(&format!("/api/v1/knowledge-bases/{kb}/documents/{id}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
        assert_eq!(
            app.knowledge
                .vectors
                .count(f.tenant_id, &table)
                .await
                .unwrap(),
            0
        );
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "Quillon", "mode": "fulltext" }),
        )
        .await;
        assert_eq!(r["hits"], json!([]));
        problem(
            app.get(
                &format!("/api/v1/knowledge-bases/{kb}/documents/{id}"),
                &f.key,
            )
            .await,
            404,
            "not_found",
        )
        .await;

        // Deleting while ingestion runs: the job finds the row gone and takes back its chunks.
        let long: String = (0..400)
            .map(|i| format!("Paragraph {i} about turbines and rotor blades.\n\n"))
            .collect();
        let big = json(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part("files", file("long.md", "text/markdown", long)),
            )
            .await,
            202,
        )
        .await;
        let big_id = big[0]["id"].as_str().unwrap().to_string();
        for _ in 0..200 {
            if document(&app, &f.key, &kb, &big_id).await["status"] == "processing" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let gone = app
            .client
            .delete(app.url(&format!("/api/v1/knowledge-bases/{kb}/documents/{big_id}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
        wait_jobs_idle(&app, f.tenant_id).await;
        assert_eq!(
            app.knowledge
                .vectors
                .count(f.tenant_id, &table)
                .await
                .unwrap(),
            0,
            "no orphan chunks"
        );
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "turbines rotor", "mode": "hybrid" }),
        )
        .await;
        assert_eq!(r["hits"], json!([]));

        // Deleting the knowledge base drops its table.
        let gone = app
            .client
            .delete(app.url(&format!("/api/v1/knowledge-bases/{kb}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
        problem(
            app.get(&format!("/api/v1/knowledge-bases/{kb}"), &f.key)
                .await,
            404,
            "not_found",
        )
        .await;
    }
}

pub(crate) async fn table_of(app: &TestApp, kb: &str) -> String {
    use sea_orm::EntityTrait;
    server::store::knowledge_bases::Entity::find_by_id(kb.parse::<uuid::Uuid>().unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .table_name
}

/// Waits until no job of the tenant is queued or running.
async fn wait_jobs_idle(app: &TestApp, tenant: uuid::Uuid) {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    for _ in 0..1200 {
        let busy = server::store::jobs::Entity::find()
            .filter(server::store::jobs::Column::TenantId.eq(tenant))
            .filter(server::store::jobs::Column::State.is_in(["queued", "running"]))
            .count(&app.db)
            .await
            .unwrap();
        if busy == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("jobs never finished");
}

#[tokio::test]
async fn bad_files_get_clear_errors_and_change_nothing() {
    for backend in backends().await {
        let app = spawn(backend, &[("MAX_UPLOAD_BYTES", "4096")]).await;
        let f = app.tenant("acme").await;
        let kb = create_kb(&app, &f.key, json!({ "name": "Docs" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let docs_path = format!("/api/v1/knowledge-bases/{kb}/documents");

        let empty = problem(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part("files", file("empty.txt", "text/plain", "")),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert!(
            empty["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("is empty"),
            "{empty}"
        );
        let big = problem(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part("files", file("big.txt", "text/plain", "x".repeat(5000))),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert!(
            big["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("larger than the limit of 4096"),
            "{big}"
        );
        let png = [
            0x89u8, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0xff, 0xfe,
        ];
        let wrong = problem(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part("files", file("logo.png", "image/png", png.to_vec())),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert!(
            wrong["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("unsupported"),
            "{wrong}"
        );
        // One bad file refuses the whole upload: the good one is not stored either.
        let mixed = Form::new()
            .part("files", file("good.txt", "text/plain", "fine text"))
            .part(
                "files",
                file(
                    "bad.bin",
                    "application/octet-stream",
                    vec![0u8, 159, 146, 150, 0, 1],
                ),
            );
        let mixed = problem(
            upload(&app, &f.key, &kb, mixed).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(mixed["errors"][0]["field"], "files[1]");
        let none = problem(
            upload(&app, &f.key, &kb, Form::new().text("tags", "x")).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(none["errors"][0]["field"], "files");
        let bad_meta = problem(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new()
                    .part("files", file("a.txt", "text/plain", "a"))
                    .text("metadata", "[1]"),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(bad_meta["errors"][0]["field"], "metadata");
        let page = json(app.get(&docs_path, &f.key).await, 200).await;
        assert_eq!(page["items"], json!([]), "nothing was stored");

        // A PDF that is not one passes the upload checks but fails ingestion, for good.
        let corrupt = json(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part(
                    "files",
                    file(
                        "manual.pdf",
                        "application/pdf",
                        "%PDF-1.4\n garbage that is no PDF",
                    ),
                ),
            )
            .await,
            202,
        )
        .await;
        let corrupt = settled(&app, &f.key, &kb, corrupt[0]["id"].as_str().unwrap()).await;
        assert_eq!(corrupt["status"], "failed");
        assert!(
            corrupt["error"].as_str().unwrap().contains("pdf"),
            "{corrupt}"
        );
        // The knowledge base still works.
        let ok = json(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new().part("files", file("ok.txt", "text/plain", "Valves stop water.")),
            )
            .await,
            202,
        )
        .await;
        assert_eq!(
            settled(&app, &f.key, &kb, ok[0]["id"].as_str().unwrap()).await["status"],
            "ready"
        );
        let r = search(&app, &f.key, &kb, json!({ "query": "valves" })).await;
        assert_eq!(sources(&r), ["ok.txt"]);

        // Bad knowledge-base settings and search requests.
        let bad = problem(
            app.send_json(
                Method::POST,
                "/api/v1/knowledge-bases",
                &f.key,
                &json!({ "name": "x", "chunk_size": 100, "chunk_overlap": 100 }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(bad["errors"][0]["field"], "chunk_overlap");
        let bad = problem(
            app.send_json(
                Method::POST,
                "/api/v1/knowledge-bases",
                &f.key,
                &json!({ "name": "y", "embedding_model": "openai/text-embedding-3-small" }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert!(
            bad["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("EMBEDDINGS_URL"),
            "{bad}"
        );
        problem(
            app.send_json(
                Method::POST,
                "/api/v1/knowledge-bases",
                &f.key,
                &json!({ "name": "Docs" }),
            )
            .await,
            409,
            "conflict",
        )
        .await;
        let bad = problem(
            app.send_json(
                Method::POST,
                &format!("/api/v1/knowledge-bases/{kb}/search"),
                &f.key,
                &json!({ "query": " ", "top_k": 0 }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(bad["errors"].as_array().unwrap().len(), 2, "{bad}");
        let bad = problem(
            app.send_json(
                Method::POST,
                &format!("/api/v1/knowledge-bases/{kb}/search"),
                &f.key,
                &json!({ "query": "x", "rerank": true }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(bad["errors"][0]["field"], "rerank");
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_knowledge() {
    for backend in backends().await {
        let app = spawn(backend, &[]).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("beta").await;
        let kb_a = create_kb(&app, &a.key, json!({ "name": "Same name" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let kb_b = create_kb(&app, &b.key, json!({ "name": "Same name" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let doc_a = json(
            upload(
                &app,
                &a.key,
                &kb_a,
                Form::new().part(
                    "files",
                    file(
                        "secret.txt",
                        "text/plain",
                        "Alpha's vault code is Tangerine.",
                    ),
                ),
            )
            .await,
            202,
        )
        .await;
        let doc_a = doc_a[0]["id"].as_str().unwrap().to_string();
        let doc_b = json(
            upload(
                &app,
                &b.key,
                &kb_b,
                Form::new().part(
                    "files",
                    file(
                        "secret.txt",
                        "text/plain",
                        "Beta keeps bicycles in the vault.",
                    ),
                ),
            )
            .await,
            202,
        )
        .await;
        let doc_b = doc_b[0]["id"].as_str().unwrap().to_string();
        settled(&app, &a.key, &kb_a, &doc_a).await;
        settled(&app, &b.key, &kb_b, &doc_b).await;

        // The same query in both tenants, twice (the second from the cache): each sees its own.
        for _ in 0..2 {
            let ra = search(&app, &a.key, &kb_a, json!({ "query": "vault code" })).await;
            let rb = search(&app, &b.key, &kb_b, json!({ "query": "vault code" })).await;
            assert!(ra["hits"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["document_id"] == doc_a.as_str()));
            assert!(rb["hits"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["document_id"] == doc_b.as_str()));
            assert!(!rb.to_string().contains("Tangerine"));
        }
        // B cannot address A's knowledge base or document by id, in any verb.
        problem(
            app.get(&format!("/api/v1/knowledge-bases/{kb_a}"), &b.key)
                .await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.send_json(
                Method::POST,
                &format!("/api/v1/knowledge-bases/{kb_a}/search"),
                &b.key,
                &json!({ "query": "vault" }),
            )
            .await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.get(&format!("/api/v1/knowledge-bases/{kb_a}/documents"), &b.key)
                .await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.get(
                &format!("/api/v1/knowledge-bases/{kb_b}/documents/{doc_a}"),
                &b.key,
            )
            .await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.get(
                &format!("/api/v1/knowledge-bases/{kb_a}/documents/{doc_a}"),
                &b.key,
            )
            .await,
            404,
            "not_found",
        )
        .await;
        let r = app
            .client
            .delete(app.url(&format!("/api/v1/knowledge-bases/{kb_b}/documents/{doc_a}")))
            .bearer_auth(&b.key)
            .send()
            .await
            .unwrap();
        problem(r, 404, "not_found").await;
        problem(
            upload(
                &app,
                &b.key,
                &kb_a,
                Form::new().part("files", file("x.txt", "text/plain", "x")),
            )
            .await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.send_json(
                Method::PATCH,
                &format!("/api/v1/knowledge-bases/{kb_a}"),
                &b.key,
                &json!({ "name": "mine" }),
            )
            .await,
            404,
            "not_found",
        )
        .await;
        let r = app
            .client
            .delete(app.url(&format!("/api/v1/knowledge-bases/{kb_a}")))
            .bearer_auth(&b.key)
            .send()
            .await
            .unwrap();
        problem(r, 404, "not_found").await;
        // A filter naming A's document finds nothing in B.
        let r = search(
            &app,
            &b.key,
            &kb_b,
            json!({ "query": "vault", "filter": { "document_ids": [doc_a] } }),
        )
        .await;
        assert_eq!(r["hits"], json!([]));
        // A's data is intact, and its LanceDB folder is its own.
        assert_eq!(
            document(&app, &a.key, &kb_a, &doc_a).await["status"],
            "ready"
        );
        let lancedb = app.dir.join("lancedb");
        let folders: Vec<String> = std::fs::read_dir(&lancedb)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            folders.contains(&format!("t_{}", a.tenant_id.simple())),
            "{folders:?}"
        );
        assert!(
            folders.contains(&format!("t_{}", b.tenant_id.simple())),
            "{folders:?}"
        );
        // Dropping a tenant's vectors leaves the other's.
        app.knowledge
            .vectors
            .drop_tenant(a.tenant_id)
            .await
            .unwrap();
        let r = search(
            &app,
            &b.key,
            &kb_b,
            json!({ "query": "bicycles", "mode": "fulltext" }),
        )
        .await;
        assert_eq!(sources(&r), ["secret.txt"]);
    }
}

/// A fake OpenAI-compatible embeddings endpoint (hashed bag of words, 64 dimensions) and a
/// fake `/rerank` that prefers shorter documents; both count what they were sent.
#[derive(Clone, Default)]
struct Fakes {
    embedded_texts: Arc<AtomicUsize>,
    reranks: Arc<AtomicUsize>,
}

fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 64];
    for word in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = word
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        v[(h % 64) as usize] += 1.0;
    }
    v
}

async fn embeddings(State(f): State<Fakes>, Json(body): Json<Value>) -> Json<Value> {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => vec![],
    };
    f.embedded_texts.fetch_add(inputs.len(), Ordering::SeqCst);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({ "object": "embedding", "index": i, "embedding": bag_of_words(t) }))
        .collect();
    Json(
        json!({ "object": "list", "data": data, "model": body["model"], "usage": { "prompt_tokens": 1, "total_tokens": 1 } }),
    )
}

async fn rerank(State(f): State<Fakes>, Json(body): Json<Value>) -> Json<Value> {
    f.reranks.fetch_add(1, Ordering::SeqCst);
    let results: Vec<Value> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| json!({ "index": i, "relevance_score": 1.0 / (1.0 + d.as_str().unwrap().len() as f64) }))
        .collect();
    Json(json!({ "results": results }))
}

async fn fake_services() -> (Fakes, String) {
    let fakes = Fakes::default();
    let router = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/rerank", post(rerank))
        .route(
            "/page.html",
            get(|| async { ([("content-type", "text/html")], HOURS) }),
        )
        .with_state(fakes.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fakes, base)
}

#[tokio::test]
async fn an_openai_compatible_model_is_cached_by_content_and_a_model_change_reindexes() {
    for backend in backends().await {
        let (fakes, base) = fake_services().await;
        let embeddings_url = format!("{base}/v1");
        let rerank_url = format!("{base}/v1/rerank");
        let app = spawn(
            backend,
            &[
                ("EMBEDDINGS_URL", &embeddings_url),
                ("RERANK_URL", &rerank_url),
            ],
        )
        .await;
        let f = app.tenant("acme").await;
        let kb = create_kb(
            &app,
            &f.key,
            json!({ "name": "Remote", "embedding_model": "openai/fake-embed" }),
        )
        .await;
        assert_eq!(kb["embedding_dim"], 64, "probed from the endpoint");
        let kb = kb["id"].as_str().unwrap().to_string();
        let form = Form::new()
            .part("files", file("pumps.md", "text/markdown", PUMPS))
            .part("files", file("prices.csv", "text/csv", PRICES))
            .text("title", "x");
        problem(
            upload(&app, &f.key, &kb, form).await,
            422,
            "validation_failed",
        )
        .await;
        let docs = json(
            upload(
                &app,
                &f.key,
                &kb,
                Form::new()
                    .part("files", file("pumps.md", "text/markdown", PUMPS))
                    .part("files", file("prices.csv", "text/csv", PRICES)),
            )
            .await,
            202,
        )
        .await;
        for d in docs.as_array().unwrap() {
            assert_eq!(
                settled(&app, &f.key, &kb, d["id"].as_str().unwrap()).await["status"],
                "ready"
            );
        }
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "team plan price", "mode": "vector" }),
        )
        .await;
        assert_eq!(sources(&r)[0], "prices.csv", "{r}");

        // The same content under another name (same title, so the same text) is not embedded again.
        let before = fakes.embedded_texts.load(Ordering::SeqCst);
        let copy = Form::new()
            .part("files", file("copy.csv", "text/csv", PRICES))
            .text("title", "prices.csv");
        let copy = json(upload(&app, &f.key, &kb, copy).await, 202).await;
        assert_eq!(
            settled(&app, &f.key, &kb, copy[0]["id"].as_str().unwrap()).await["status"],
            "ready"
        );
        assert_eq!(
            fakes.embedded_texts.load(Ordering::SeqCst),
            before,
            "cached by content hash"
        );

        // Reranking through the /rerank service reorders by its scores.
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "pump", "mode": "hybrid", "rerank": true }),
        )
        .await;
        assert_eq!(r["reranked"], true);
        assert!(fakes.reranks.load(Ordering::SeqCst) >= 1);
        let scores: Vec<f64> = r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["rerank_score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

        // Switching to the local model re-embeds every document into a new table.
        let table_before = table_of(&app, &kb).await;
        let kb_now = json(
            app.send_json(
                Method::PATCH,
                &format!("/api/v1/knowledge-bases/{kb}"),
                &f.key,
                &json!({ "embedding_model": "local/all-MiniLM-L6-v2" }),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(kb_now["embedding_dim"], 384);
        wait_jobs_idle(&app, f.tenant_id).await;
        let table_after = table_of(&app, &kb).await;
        assert_ne!(table_before, table_after);
        assert_eq!(
            app.knowledge
                .vectors
                .count(f.tenant_id, &table_before)
                .await
                .unwrap(),
            0,
            "old table dropped"
        );
        let docs = json(
            app.get(&format!("/api/v1/knowledge-bases/{kb}/documents"), &f.key)
                .await,
            200,
        )
        .await;
        assert!(
            docs["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["status"] == "ready" && d["revision"] == 2),
            "{docs}"
        );
        let r = search(
            &app,
            &f.key,
            &kb,
            json!({ "query": "how much does a subscription cost", "mode": "vector" }),
        )
        .await;
        assert_eq!(sources(&r)[0], "prices.csv", "{r}");
    }
}

#[tokio::test]
async fn documents_are_fetched_by_url_but_never_from_internal_addresses() {
    for backend in backends().await {
        let (_fakes, base) = fake_services().await;
        let page = format!("{base}/page.html");
        // Default policy: loopback is refused, and the document says why.
        let app = spawn(backend, &[]).await;
        let f = app.tenant("acme").await;
        let kb = create_kb(&app, &f.key, json!({ "name": "Web" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let path = format!("/api/v1/knowledge-bases/{kb}/documents/fetch");
        let doc = json(
            app.send_json(
                Method::POST,
                &path,
                &f.key,
                &json!({ "url": page, "tags": ["web"] }),
            )
            .await,
            202,
        )
        .await;
        let doc = settled(&app, &f.key, &kb, doc["id"].as_str().unwrap()).await;
        assert_eq!(doc["status"], "failed");
        assert!(
            doc["error"].as_str().unwrap().contains("not allowed"),
            "{doc}"
        );
        problem(
            app.send_json(
                Method::POST,
                &path,
                &f.key,
                &json!({ "url": "file:///etc/passwd" }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        problem(
            app.send_json(
                Method::POST,
                &path,
                &f.key,
                &json!({ "url": "http://169.254.169.254/latest/meta-data", "tags": ["a|b"] }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        drop(app);

        // Allowed for intranets by configuration.
        let app = spawn(backend, &[("FETCH_ALLOW_PRIVATE", "true")]).await;
        let f = app.tenant("acme").await;
        let kb = create_kb(&app, &f.key, json!({ "name": "Web" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let path = format!("/api/v1/knowledge-bases/{kb}/documents/fetch");
        let doc = json(
            app.send_json(Method::POST, &path, &f.key, &json!({ "url": page }))
                .await,
            202,
        )
        .await;
        let doc = settled(&app, &f.key, &kb, doc["id"].as_str().unwrap()).await;
        assert_eq!(doc["status"], "ready", "{doc}");
        assert_eq!(doc["format"], "html");
        assert_eq!(doc["title"], "Opening hours");
        let r = search(&app, &f.key, &kb, json!({ "query": "saturday opening" })).await;
        assert_eq!(sources(&r)[0], page);
    }
}
