//! The OpenAPI document and an interactive reference page that needs no internet: Swagger UI's
//! files ship in `public/swagger-ui` (from the npm package swagger-ui-dist).

use axum::response::{Html, IntoResponse};
use axum::Json;
use utoipa::OpenApi;

use super::ApiDoc;

pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

pub async fn docs_page() -> Html<&'static str> {
    Html(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>API reference · Agent Platform</title>
  <link rel="stylesheet" href="/swagger-ui/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="/swagger-ui/init.js"></script>
</body>
</html>"#,
    )
}
