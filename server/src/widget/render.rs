//! Answers reach visitors as HTML: markdown rendered on the server and sanitised with ammonia,
//! so no HTML the model, the tenant's documents or an operator wrote reaches the widget's DOM
//! as markup (only the tags markdown produces, links with `rel="noopener noreferrer nofollow"`
//! and only http(s) and mailto links).

use std::sync::LazyLock;

use pulldown_cmark::{html::push_html, Options, Parser};

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.tags(
        [
            "p",
            "br",
            "strong",
            "em",
            "del",
            "code",
            "pre",
            "ul",
            "ol",
            "li",
            "blockquote",
            "a",
            "h1",
            "h2",
            "h3",
            "h4",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "hr",
        ]
        .into_iter()
        .collect(),
    )
    .url_schemes(["http", "https", "mailto"].into_iter().collect())
    .link_rel(Some("noopener noreferrer nofollow"))
    .set_tag_attribute_value("a", "target", "_blank");
    b
});

/// Safe HTML for `markdown`.
pub fn html(markdown: &str) -> String {
    let mut raw = String::with_capacity(markdown.len() * 5 / 4);
    let parser = Parser::new_ext(
        markdown,
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES,
    );
    push_html(&mut raw, parser);
    CLEANER.clean(&raw).to_string()
}

#[cfg(test)]
mod tests {
    use super::html;

    #[test]
    fn markdown_renders_and_markup_does_not() {
        assert_eq!(
            html("**Open** 9–5, see [hours](https://shop.example/hours)"),
            "<p><strong>Open</strong> 9–5, see <a href=\"https://shop.example/hours\" \
             target=\"_blank\" rel=\"noopener noreferrer nofollow\">hours</a></p>\n"
        );
        for hostile in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[x](javascript:alert(1))",
            "<a href=\"https://x\" onclick=\"alert(1)\">x</a>",
            "<iframe src=\"https://evil\"></iframe>",
            "<style>body{display:none}</style>",
        ] {
            let out = html(hostile);
            for bad in [
                "<script",
                "onerror",
                "javascript:",
                "onclick",
                "<iframe",
                "<style",
                "<img",
            ] {
                assert!(!out.contains(bad), "{hostile} gave {out}");
            }
        }
    }
}
