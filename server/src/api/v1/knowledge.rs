//! `/api/v1/knowledge-bases`: knowledge bases, their documents (multipart upload or fetch by
//! URL) and search. The console uploads through [`console_upload`], the same reader and service.

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, Upload};
use app::types::{
    CreateKnowledgeBase, Document, DocumentMeta, DocumentQuery, FetchDocument, KnowledgeBase, Page,
    SearchRequest, SearchResponse, UpdateKnowledgeBase,
};

use crate::auth::ApiAccess;
use crate::http::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

/// The knowledge bases of the tenant, by name.
#[utoipa::path(get, path = "/api/v1/knowledge-bases", tag = "knowledge",
    responses(
        (status = 200, body = Vec<KnowledgeBase>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_knowledge_bases(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<KnowledgeBase>>> {
    Ok(Json(s.services.knowledge.list_knowledge_bases(&a).await?))
}

/// Create a knowledge base. The embedding model (default `local/all-MiniLM-L6-v2`) and the
/// chunking are fixed per knowledge base.
#[utoipa::path(post, path = "/api/v1/knowledge-bases", tag = "knowledge",
    request_body = CreateKnowledgeBase,
    responses(
        (status = 201, body = KnowledgeBase),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_knowledge_base(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(create): ApiJson<CreateKnowledgeBase>,
) -> ApiResult<(StatusCode, Json<KnowledgeBase>)> {
    let kb = s
        .services
        .knowledge
        .create_knowledge_base(&a, create)
        .await?;
    Ok((StatusCode::CREATED, Json(kb)))
}

/// One knowledge base with its document and chunk counts.
#[utoipa::path(get, path = "/api/v1/knowledge-bases/{kb}", tag = "knowledge",
    params(("kb" = Uuid, Path, description = "The knowledge base's id")),
    responses(
        (status = 200, body = KnowledgeBase),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_knowledge_base(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(kb): ApiPath<Uuid>,
) -> ApiResult<Json<KnowledgeBase>> {
    Ok(Json(s.services.knowledge.get_knowledge_base(&a, kb).await?))
}

/// Change a knowledge base. A new `embedding_model` re-embeds every document (a job each);
/// new chunk sizes apply to documents uploaded afterwards.
#[utoipa::path(patch, path = "/api/v1/knowledge-bases/{kb}", tag = "knowledge",
    params(("kb" = Uuid, Path, description = "The knowledge base's id")),
    request_body = UpdateKnowledgeBase,
    responses(
        (status = 200, body = KnowledgeBase),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_knowledge_base(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(kb): ApiPath<Uuid>,
    ApiJson(update): ApiJson<UpdateKnowledgeBase>,
) -> ApiResult<Json<KnowledgeBase>> {
    Ok(Json(
        s.services
            .knowledge
            .update_knowledge_base(&a, kb, update)
            .await?,
    ))
}

/// Delete a knowledge base with its documents and index.
#[utoipa::path(delete, path = "/api/v1/knowledge-bases/{kb}", tag = "knowledge",
    params(("kb" = Uuid, Path, description = "The knowledge base's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_knowledge_base(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(kb): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    s.services.knowledge.delete_knowledge_base(&a, kb).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The knowledge base's documents, oldest first, with their ingestion status. Follow
/// `next_cursor` for more.
#[utoipa::path(get, path = "/api/v1/knowledge-bases/{kb}/documents", tag = "knowledge",
    params(("kb" = Uuid, Path, description = "The knowledge base's id"), DocumentQuery),
    responses(
        (status = 200, body = Page<Document>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_documents(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(kb): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<DocumentQuery>,
) -> ApiResult<Json<Page<Document>>> {
    Ok(Json(
        s.services.knowledge.list_documents(&a, kb, query).await?,
    ))
}

/// The multipart form of an upload (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// One or more files (field name `files` or `file`): text, Markdown, HTML, PDF, DOCX, CSV
    /// or JSON, each up to `MAX_UPLOAD_BYTES`.
    #[schema(format = Binary)]
    files: Vec<String>,
    /// Title (only when one file is uploaded).
    title: Option<String>,
    /// Comma-separated tags, applied to every file.
    tags: Option<String>,
    /// Language tag such as `en`.
    language: Option<String>,
    /// A JSON object of string values, e.g. `{"team":"support"}`.
    metadata: Option<String>,
}

/// Upload documents (`multipart/form-data`). They are stored and queued for ingestion; poll
/// a document for its status and progress. A file named like an existing document replaces
/// it (its chunks are swapped in one step once the new ones are ready). All or nothing: an
/// empty, oversized or unsupported file refuses the whole upload with 422.
#[utoipa::path(post, path = "/api/v1/knowledge-bases/{kb}/documents", tag = "knowledge",
    params(("kb" = Uuid, Path, description = "The knowledge base's id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, body = Vec<Document>, description = "Stored and queued"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload_documents(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(kb): ApiPath<Uuid>,
    multipart: Multipart,
) -> ApiResult<(StatusCode, Json<Vec<Document>>)> {
    upload(&s, &a, kb, multipart).await
}

async fn upload(
    s: &AppState,
    a: &Access,
    kb: Uuid,
    multipart: Multipart,
) -> ApiResult<(StatusCode, Json<Vec<Document>>)> {
    let files = read_upload(multipart, s.upload_limit()).await?;
    let docs = s.services.knowledge.upload_documents(a, kb, files).await?;
    Ok((StatusCode::ACCEPTED, Json(docs)))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(AppError::PayloadTooLarge { limit_bytes: limit })
    } else {
        ApiError(AppError::invalid("body", e.body_text()))
    }
}

/// Reads files and their shared description from a multipart form.
pub async fn read_upload(mut form: Multipart, limit: usize) -> Result<Vec<Upload>, ApiError> {
    let mut files = Vec::new();
    let mut meta = DocumentMeta::default();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "files" | "file" => {
                let filename = field.file_name().unwrap_or_default().to_string();
                let content_type = field.content_type().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
                files.push(Upload {
                    filename,
                    content_type,
                    bytes: bytes.to_vec(),
                    meta: DocumentMeta::default(),
                });
            }
            "title" | "tags" | "language" | "metadata" => {
                let value = field.text().await.map_err(|e| multipart_error(e, limit))?;
                let value = value.trim().to_string();
                if value.is_empty() {
                    continue;
                }
                match name.as_str() {
                    "title" => meta.title = Some(value),
                    "tags" => meta.tags.extend(
                        value
                            .split(',')
                            .map(|t| t.trim().to_string())
                            .filter(|t| !t.is_empty()),
                    ),
                    "language" => meta.language = Some(value),
                    _ => {
                        meta.metadata = serde_json::from_str(&value).map_err(|_| {
                            ApiError(AppError::invalid(
                                "metadata",
                                "must be a JSON object of string values",
                            ))
                        })?
                    }
                }
            }
            other => {
                return Err(ApiError(AppError::invalid(
                    other,
                    "unknown field; expected files, title, tags, language or metadata",
                )))
            }
        }
    }
    if meta.title.is_some() && files.len() > 1 {
        return Err(ApiError(AppError::invalid(
            "title",
            "a title can only be given when uploading one file",
        )));
    }
    for file in &mut files {
        file.meta = meta.clone();
    }
    Ok(files)
}

/// Fetch a document from a URL and ingest it. Only http(s); private, loopback and link-local
/// addresses are refused (unless `FETCH_ALLOW_PRIVATE`); the size limit and type checks of
/// uploads apply. Fetching the same URL again replaces the document.
#[utoipa::path(post, path = "/api/v1/knowledge-bases/{kb}/documents/fetch", tag = "knowledge",
    params(("kb" = Uuid, Path, description = "The knowledge base's id")),
    request_body = FetchDocument,
    responses(
        (status = 202, body = Document, description = "Queued for fetching and ingestion"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn fetch_document(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(kb): ApiPath<Uuid>,
    ApiJson(fetch): ApiJson<FetchDocument>,
) -> ApiResult<(StatusCode, Json<Document>)> {
    let doc = s.services.knowledge.fetch_document(&a, kb, fetch).await?;
    Ok((StatusCode::ACCEPTED, Json(doc)))
}

/// One document: status (`queued`, `processing` with `progress`, `ready`, `failed` with
/// `error`), chunk count and metadata.
#[utoipa::path(get, path = "/api/v1/knowledge-bases/{kb}/documents/{id}", tag = "knowledge",
    params(
        ("kb" = Uuid, Path, description = "The knowledge base's id"),
        ("id" = Uuid, Path, description = "The document's id"),
    ),
    responses(
        (status = 200, body = Document),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_document(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath((kb, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Document>> {
    Ok(Json(s.services.knowledge.get_document(&a, kb, id).await?))
}

/// Delete a document and its chunks; safe while it is being ingested.
#[utoipa::path(delete, path = "/api/v1/knowledge-bases/{kb}/documents/{id}", tag = "knowledge",
    params(
        ("kb" = Uuid, Path, description = "The knowledge base's id"),
        ("id" = Uuid, Path, description = "The document's id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_document(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath((kb, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    s.services.knowledge.delete_document(&a, kb, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Search the knowledge base: `vector`, `fulltext` (BM25) or `hybrid` (both, fused by
/// reciprocal rank fusion), optionally reranked. Every hit carries its citation (document,
/// chunk, byte offsets) and its rank and score in each leg. Results are cached briefly per
/// knowledge-base version. A long query (a pasted email, up to 16,000 characters) is searched
/// as far as each leg can read it, and `cut` says what was left out.
#[utoipa::path(post, path = "/api/v1/knowledge-bases/{kb}/search", tag = "knowledge",
    params(("kb" = Uuid, Path, description = "The knowledge base's id")),
    request_body = SearchRequest,
    responses(
        (status = 200, body = SearchResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn search(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(kb): ApiPath<Uuid>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> ApiResult<Json<SearchResponse>> {
    Ok(Json(s.services.knowledge.search(&a, kb, request).await?))
}

pub fn routes(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/knowledge-bases",
            get(list_knowledge_bases).post(create_knowledge_base),
        )
        .route(
            "/api/v1/knowledge-bases/{kb}",
            get(get_knowledge_base)
                .patch(update_knowledge_base)
                .delete(delete_knowledge_base),
        )
        .route(
            "/api/v1/knowledge-bases/{kb}/documents",
            get(list_documents)
                .post(upload_documents)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/v1/knowledge-bases/{kb}/documents/fetch",
            post(fetch_document),
        )
        .route(
            "/api/v1/knowledge-bases/{kb}/documents/{id}",
            get(get_document).delete(delete_document),
        )
        .route("/api/v1/knowledge-bases/{kb}/search", post(search))
}

/// The console's upload: the signed-in user's session instead of a key, same form, same
/// service (`POST /console/knowledge-bases/{kb}/documents`).
pub async fn console_upload(
    State(s): State<AppState>,
    access: Option<Extension<Access>>,
    ApiPath(kb): ApiPath<Uuid>,
    multipart: Multipart,
) -> ApiResult<(StatusCode, Json<Vec<Document>>)> {
    let Some(Extension(a)) = access else {
        return Err(ApiError(AppError::Unauthorized));
    };
    upload(&s, &a, kb, multipart).await
}

pub fn console_routes(upload_limit: usize) -> Router<AppState> {
    Router::new().route(
        "/console/knowledge-bases/{kb}/documents",
        post(console_upload).layer(DefaultBodyLimit::max(upload_limit)),
    )
}
