//! `/widget/{public_id}`: the page the loader puts in the iframe. Its CSP names the origins
//! that may frame it (`frame-ancestors`: the widget's allowed domains and the console, for its
//! preview), so a site that is not allowed gets a frame the browser refuses to show. The page
//! only loads the widget's own script, style and WASM (`/widget/pkg/…`, built by `make
//! widget`) and talks only to this server.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::service::settings_of;
use crate::http::error::ApiPath;
use crate::state::AppState;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page in the widget's language (`auto`: none, so the frame takes the browser's).
fn page(title: &str, language: &str) -> String {
    let lang = if language == "auto" {
        String::new()
    } else {
        format!(" lang=\"{}\"", escape(language))
    };
    format!(
        "<!doctype html><html{lang}><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/widget/pkg/widget.css\">\
         <link rel=\"modulepreload\" href=\"/widget/pkg/widget.js\">\
         <link rel=\"preload\" href=\"/widget/pkg/widget_bg.wasm\" as=\"fetch\" type=\"application/wasm\" crossorigin>\
         <script type=\"module\" src=\"/widget/pkg/boot.js\"></script>\
         </head><body></body></html>",
        escape(title)
    )
}

/// The frame's page, or 404 for a widget that does not exist.
pub async fn frame(State(s): State<AppState>, ApiPath(public_id): ApiPath<String>) -> Response {
    let widget = match s.visitors.widget(&public_id).await {
        Ok(w) => w,
        Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                Html("<!doctype html><title>Not found</title><p>This chat is not available."),
            )
                .into_response()
        }
    };
    let settings = settings_of(&widget);
    let ancestors = s.visitors.frame_ancestors(&settings).join(" ");
    let csp = format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         connect-src 'self'; img-src 'self' https: data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors {ancestors}"
    );
    let mut response = Html(page(&settings.name, &settings.language)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_title_is_escaped() {
        let page = super::page("<script>alert(1)</script> & co", "auto");
        assert!(page.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>"));
        assert!(page.starts_with("<!doctype html><html><head>"));
    }

    #[test]
    fn the_page_is_in_the_widgets_language() {
        assert!(super::page("Shop", "de").starts_with("<!doctype html><html lang=\"de\"><head>"));
    }
}
