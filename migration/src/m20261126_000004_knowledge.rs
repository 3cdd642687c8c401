//! Knowledge bases, their documents (with the uploaded bytes kept for re-indexing) and the
//! per-tenant embedding cache. Chunks and vectors live in LanceDB, not here.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum KnowledgeBases {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    EmbeddingModel,
    EmbeddingDim,
    TableName,
    ChunkSize,
    ChunkOverlap,
    ParentChunkSize,
    SearchDefaults,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Documents {
    Table,
    Id,
    TenantId,
    KnowledgeBaseId,
    Title,
    Source,
    Format,
    ContentType,
    Tags,
    Language,
    Metadata,
    SizeBytes,
    ContentHash,
    Revision,
    Status,
    Progress,
    Error,
    ChunkCount,
    CreatedAt,
    UpdatedAt,
    IngestedAt,
}

#[derive(DeriveIden)]
enum DocumentContents {
    Table,
    DocumentId,
    TenantId,
    Bytes,
}

#[derive(DeriveIden)]
enum EmbeddingCache {
    Table,
    TenantId,
    Model,
    ContentHash,
    Vector,
    CreatedAt,
}

fn tenant_fk(
    table: impl IntoIden + 'static,
    column: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Tenants::Table, Tenants::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(KnowledgeBases::Table)
                .col(uuid(KnowledgeBases::Id).primary_key())
                .col(uuid(KnowledgeBases::TenantId))
                .col(string_len(KnowledgeBases::Name, 100))
                .col(text(KnowledgeBases::Description))
                .col(string_len(KnowledgeBases::EmbeddingModel, 200))
                .col(integer(KnowledgeBases::EmbeddingDim))
                .col(string_len(KnowledgeBases::TableName, 100))
                .col(integer(KnowledgeBases::ChunkSize))
                .col(integer(KnowledgeBases::ChunkOverlap))
                .col(integer_null(KnowledgeBases::ParentChunkSize))
                .col(json(KnowledgeBases::SearchDefaults))
                .col(big_integer(KnowledgeBases::Version))
                .col(timestamp_with_time_zone(KnowledgeBases::CreatedAt))
                .col(timestamp_with_time_zone(KnowledgeBases::UpdatedAt))
                .foreign_key(&mut tenant_fk(
                    KnowledgeBases::Table,
                    KnowledgeBases::TenantId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_knowledge_bases_tenant_name")
                .table(KnowledgeBases::Table)
                .col(KnowledgeBases::TenantId)
                .col(KnowledgeBases::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Documents::Table)
                .col(uuid(Documents::Id).primary_key())
                .col(uuid(Documents::TenantId))
                .col(uuid(Documents::KnowledgeBaseId))
                .col(string_len(Documents::Title, 300))
                .col(string_len(Documents::Source, 2000))
                .col(string_len(Documents::Format, 16))
                .col(string_len_null(Documents::ContentType, 200))
                .col(json(Documents::Tags))
                .col(string_len_null(Documents::Language, 16))
                .col(json(Documents::Metadata))
                .col(big_integer(Documents::SizeBytes))
                .col(string_len(Documents::ContentHash, 64))
                .col(integer(Documents::Revision))
                .col(string_len(Documents::Status, 16))
                .col(small_integer(Documents::Progress))
                .col(text_null(Documents::Error))
                .col(integer(Documents::ChunkCount))
                .col(timestamp_with_time_zone(Documents::CreatedAt))
                .col(timestamp_with_time_zone(Documents::UpdatedAt))
                .col(timestamp_with_time_zone_null(Documents::IngestedAt))
                .foreign_key(&mut tenant_fk(Documents::Table, Documents::TenantId))
                .foreign_key(
                    ForeignKey::create()
                        .from(Documents::Table, Documents::KnowledgeBaseId)
                        .to(KnowledgeBases::Table, KnowledgeBases::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Listing a knowledge base's documents by id (uuid v7: newest last).
        m.create_index(
            Index::create()
                .name("ix_documents_kb_id")
                .table(Documents::Table)
                .col(Documents::KnowledgeBaseId)
                .col(Documents::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(DocumentContents::Table)
                .col(uuid(DocumentContents::DocumentId).primary_key())
                .col(uuid(DocumentContents::TenantId))
                .col(blob(DocumentContents::Bytes))
                .foreign_key(
                    ForeignKey::create()
                        .from(DocumentContents::Table, DocumentContents::DocumentId)
                        .to(Documents::Table, Documents::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(EmbeddingCache::Table)
                .col(uuid(EmbeddingCache::TenantId))
                .col(string_len(EmbeddingCache::Model, 200))
                .col(string_len(EmbeddingCache::ContentHash, 64))
                .col(blob(EmbeddingCache::Vector))
                .col(timestamp_with_time_zone(EmbeddingCache::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(EmbeddingCache::TenantId)
                        .col(EmbeddingCache::Model)
                        .col(EmbeddingCache::ContentHash),
                )
                .foreign_key(&mut tenant_fk(
                    EmbeddingCache::Table,
                    EmbeddingCache::TenantId,
                ))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EmbeddingCache::Table.into_iden(),
            DocumentContents::Table.into_iden(),
            Documents::Table.into_iden(),
            KnowledgeBases::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
