//! Turning an uploaded document into plain text for chunking.
//!
//! [`Format::detect`] decides what a file holds from its name, its declared content type and
//! its first bytes; [`extract`] turns it into text. Where the format carries structure (Markdown,
//! HTML, DOCX) the text keeps it as Markdown — headings become `#` lines, blocks are separated
//! by blank lines — so a Markdown-aware splitter can cut along sections ([`Extracted::markdown`]).
//! Tabular formats (CSV, JSON) become one block of `key: value` lines per record, blocks
//! separated by blank lines, so a splitter keeps a record together.
//!
//! Extraction is blocking and CPU-bound. It never panics; a PDF parser panic on a corrupt file
//! is caught and reported as [`ExtractError::Invalid`]. What a panic cannot catch (a parser
//! recursing until the stack overflows, a decompression bomb exhausting memory) is why the
//! platform runs it in a child process with limits ([`super::sandbox`]).

use std::borrow::Cow;
use std::io::{Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use quick_xml::events::Event;
use quick_xml::Reader;
use scraper::node::Element;
use scraper::{ElementRef, Html, Node};

/// The content type of a Word (OOXML) document.
pub const DOCX_CONTENT_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// The most a DOCX part (`word/document.xml`) may inflate to; a larger one is refused rather
/// than decompressed into memory (zip bombs).
const MAX_DOCX_PART_BYTES: u64 = 64 * 1024 * 1024;

/// Titles longer than this are cut.
const MAX_TITLE_CHARS: usize = 300;

/// Extracted text may be at most this many times the file's size. CSV and JSON repeat column
/// names and key paths for every value, and nested lists indent every item, so a crafted file
/// of 2 MB could otherwise expand to gigabytes and take the process down for every tenant.
pub const MAX_EXPANSION: usize = 20;
/// A small file may always yield this much text.
const MIN_TEXT_LIMIT: usize = 1 << 20;
/// Deepest list nesting that still indents its items.
const MAX_LIST_INDENT: usize = 8;

/// The most text a file of `input` bytes may yield: [`MAX_EXPANSION`] times its size (at
/// least 1 MiB), and never more than `cap` (`MAX_EXTRACTED_BYTES`).
pub fn text_limit(input: usize, cap: usize) -> usize {
    input
        .saturating_mul(MAX_EXPANSION)
        .max(MIN_TEXT_LIMIT)
        .min(cap)
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a file holds, decided from its name, declared content type and first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Csv,
    Json,
}

impl Format {
    /// Decides the format: by the file name's extension first, else by the declared content
    /// type (parameters such as `charset` ignored), else by the bytes themselves (`%PDF-`, a
    /// zip holding `word/document.xml`, UTF-8 text — HTML when it opens with `<!doctype html`
    /// or `<html`).
    ///
    /// A declared type is trusted here; a file whose bytes contradict it fails in [`extract`].
    pub fn detect(
        filename: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Format, ExtractError> {
        if let Some(format) = Format::from_extension(filename) {
            return Ok(format);
        }
        let content_type = content_type.map(mime_essence).filter(|ct| !ct.is_empty());
        if let Some(format) = content_type.as_deref().and_then(Format::from_content_type) {
            return Ok(format);
        }
        let describe = || match (&content_type, extension(filename)) {
            (Some(ct), _) if ct != "application/octet-stream" => ct.clone(),
            (_, Some(ext)) => format!(".{ext}"),
            (Some(ct), None) => ct.clone(),
            (None, None) => "unrecognised binary data".to_string(),
        };
        if bytes.starts_with(b"%PDF-") {
            return Ok(Format::Pdf);
        }
        if bytes.starts_with(b"PK\x03\x04") {
            if contains(bytes, b"word/document.xml") {
                return Ok(Format::Docx);
            }
            return Err(ExtractError::Unsupported(format!(
                "zip archive ({})",
                describe()
            )));
        }
        if !bytes.contains(&0) || has_utf16_bom(bytes) {
            if let Ok(text) = decode_text(bytes) {
                return Ok(if looks_like_html(&text) {
                    Format::Html
                } else {
                    Format::Text
                });
            }
        }
        Err(ExtractError::Unsupported(describe()))
    }

    /// The format a file name's extension stands for (`report.PDF` -> Pdf).
    pub fn from_extension(filename: &str) -> Option<Format> {
        Some(match extension(filename)?.as_str() {
            "txt" | "text" | "log" => Format::Text,
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "csv" => Format::Csv,
            "json" | "jsonl" | "ndjson" => Format::Json,
            _ => return None,
        })
    }

    /// The format a content type stands for, ignoring parameters (`text/html; charset=utf-8`).
    /// `application/octet-stream` stands for none.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        Some(match mime_essence(content_type).as_str() {
            "text/plain" => Format::Text,
            "text/markdown" | "text/x-markdown" => Format::Markdown,
            "text/html" | "application/xhtml+xml" => Format::Html,
            "application/pdf" => Format::Pdf,
            DOCX_CONTENT_TYPE => Format::Docx,
            "text/csv" => Format::Csv,
            "application/json"
            | "application/x-ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Format::Json,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document's text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extracted {
    /// The document's text; Markdown-ish where structure is known (headings as `#` lines) so
    /// a Markdown-aware splitter can use it.
    pub text: String,
    /// From `<title>`/`<h1>`, the first Markdown heading, the PDF's or DOCX's metadata or first
    /// heading; None otherwise.
    pub title: Option<String>,
    /// True when `text` uses Markdown structure (Markdown, HTML, DOCX): split it with a
    /// Markdown splitter.
    pub markdown: bool,
}

#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ExtractError {
    #[error("unsupported file type: {0}")]
    Unsupported(String),
    #[error("the file holds no text")]
    Empty,
    #[error(
        "the file's text is larger than {} KiB ({MAX_EXPANSION} times the file's size, at most \
         MAX_EXTRACTED_BYTES); split the file or raise the limit",
        limit / 1024
    )]
    TooLarge { limit: usize },
    #[error("the file could not be read as {format}: {reason}")]
    Invalid { format: Format, reason: String },
}

impl ExtractError {
    pub(crate) fn invalid(format: Format, reason: impl Into<String>) -> ExtractError {
        ExtractError::Invalid {
            format,
            reason: reason.into(),
        }
    }
}

/// Extracts a document's text, at most `limit` bytes of it (see [`text_limit`]): past that the
/// formats that repeat or indent stop early and the document fails with
/// [`ExtractError::TooLarge`]. Blocking (the caller runs it in `spawn_blocking`). Never panics.
pub fn extract(format: Format, bytes: &[u8], limit: usize) -> Result<Extracted, ExtractError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ExtractError::Empty);
    }
    let mut extracted = match format {
        Format::Text => extract_text(bytes)?,
        Format::Markdown => extract_markdown(bytes)?,
        Format::Html => extract_html(bytes)?,
        Format::Pdf => extract_pdf(bytes)?,
        Format::Docx => extract_docx(bytes)?,
        Format::Csv => extract_csv(bytes, limit)?,
        Format::Json => extract_json(bytes, limit)?,
    };
    if extracted.text.len() > limit {
        return Err(ExtractError::TooLarge { limit });
    }
    extracted.text = tidy(&extracted.text);
    if extracted.text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(extracted)
}

// ---------------------------------------------------------------------------------------------
// Detection helpers

/// The lower-cased extension of the last path component, if any.
fn extension(filename: &str) -> Option<String> {
    let name = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let (_, ext) = name.rsplit_once('.')?;
    let ext = ext.trim();
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// `text/html; charset=utf-8` -> `text/html`.
fn mime_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn has_utf16_bom(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF")
}

fn looks_like_html(text: &str) -> bool {
    let start: String = text
        .trim_start()
        .chars()
        .take(14)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

/// Decodes text: UTF-8 (a BOM is stripped), or UTF-16 when it has a byte-order mark.
fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>, String> {
    let utf16 = |bytes: &[u8], from: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|pair| from([pair[0], pair.get(1).copied().unwrap_or(0)]))
            .collect();
        String::from_utf16(&units)
            .map(Cow::Owned)
            .map_err(|_| "invalid UTF-16 text".to_string())
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, u16::from_be_bytes);
    }
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|e| format!("the text is not valid UTF-8 ({e})"))
}

// ---------------------------------------------------------------------------------------------
// Text clean-up

/// Normalises line endings, drops control characters, trims trailing whitespace on every
/// line, collapses runs of blank lines into one and trims blank lines at both ends.
fn tidy(text: &str) -> String {
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                clean.push('\n');
            }
            '\u{c}' | '\u{b}' => clean.push('\n'),
            '\n' | '\t' => clean.push(c),
            '\u{feff}' => {}
            c if c.is_control() => {}
            c => clean.push(c),
        }
    }
    let mut out = String::with_capacity(clean.len());
    let mut blank = false;
    for line in clean.split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(line);
    }
    out
}

/// Collapses whitespace to single spaces, trims, and cuts overly long titles.
fn clean_title(title: &str) -> Option<String> {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return None;
    }
    Some(title.chars().take(MAX_TITLE_CHARS).collect())
}

/// A field value inside a `key: value` record: line endings normalised, blank lines dropped
/// (a blank line would split the record), outer whitespace trimmed.
fn clean_value(value: &str) -> String {
    value
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Text and Markdown

fn extract_text(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes).map_err(|e| ExtractError::invalid(Format::Text, e))?;
    Ok(Extracted {
        text: text.into_owned(),
        title: None,
        markdown: false,
    })
}

fn extract_markdown(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes).map_err(|e| ExtractError::invalid(Format::Markdown, e))?;
    let text = text.replace("\r\n", "\n");
    Ok(Extracted {
        title: markdown_title(&text),
        text,
        markdown: true,
    })
}

/// The first level-one ATX heading (`# Title`) outside code fences.
fn markdown_title(text: &str) -> Option<String> {
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(marker) = fence {
            if line.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if line.starts_with("```") {
            fence = Some("```");
        } else if line.starts_with("~~~") {
            fence = Some("~~~");
        } else if let Some(heading) = line.strip_prefix("# ") {
            if let Some(title) = clean_title(heading.trim().trim_end_matches('#')) {
                return Some(title);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// HTML

fn extract_html(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let source = String::from_utf8_lossy(bytes);
    // html5ever's tree builder checks scopes by walking the stack of open elements, so its
    // time grows with the square of the nesting (20 000 levels: minutes).
    if html_depth(&source) > MAX_HTML_DEPTH {
        return Err(ExtractError::invalid(
            Format::Html,
            format!("its elements are nested more than {MAX_HTML_DEPTH} deep"),
        ));
    }
    let document = Html::parse_document(&source);

    let roots = content_roots(&document);
    let mut writer = HtmlWriter::default();
    for root in &roots {
        render_html(*root, &mut writer);
        writer.block_break();
    }
    writer.flush();

    let title = document
        .root_element()
        .descendent_elements()
        .find(|el| el.value().name() == "title" && !has_ancestor(el, |a| a.name() == "svg"))
        .and_then(|el| clean_title(&el.text().collect::<String>()))
        .or_else(|| {
            roots
                .iter()
                .flat_map(|root| root.descendent_elements())
                .chain(document.root_element().descendent_elements())
                .find(|el| el.value().name() == "h1")
                .and_then(|el| clean_title(&el.text().collect::<String>()))
        });

    Ok(Extracted {
        text: writer.out,
        title,
        markdown: true,
    })
}

/// Deepest element nesting an HTML document may have (real pages stay far below 100).
const MAX_HTML_DEPTH: usize = 512;

/// How deep `html`'s elements nest, estimated from its tags in one pass: start tags open,
/// end tags close; void elements, self-closing tags and elements whose end tag may be left
/// out (`li`, `p`, `td`…) are not counted, comments and script or style content are skipped.
fn html_depth(html: &str) -> usize {
    const NOT_COUNTED: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "li", "p", "dt", "dd", "tr", "td", "th", "option", "optgroup", "tbody",
        "thead", "tfoot", "colgroup", "caption", "rt", "rp", "html", "head", "body",
    ];
    let lower = html.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let (mut depth, mut deepest, mut at) = (0usize, 0usize, 0usize);
    while let Some(offset) = lower[at..].find('<') {
        at += offset + 1;
        if lower[at..].starts_with("!--") {
            at += lower[at..]
                .find("-->")
                .map_or(lower.len() - at, |end| end + 3);
            continue;
        }
        let closing = bytes.get(at) == Some(&b'/');
        let start = at + usize::from(closing);
        let name_len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
            .count();
        if name_len == 0 || !bytes[start].is_ascii_alphabetic() {
            continue;
        }
        let name = &lower[start..start + name_len];
        let Some(close) = lower[start..].find('>') else {
            break;
        };
        let self_closing = lower[..start + close].ends_with('/');
        at = start + close + 1;
        if NOT_COUNTED.contains(&name) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else if !self_closing {
            depth += 1;
            deepest = deepest.max(depth);
            if matches!(name, "script" | "style") {
                let end = format!("</{name}");
                at += lower[at..].find(&end).unwrap_or(lower.len() - at);
            }
        }
    }
    deepest
}

fn has_ancestor(el: &ElementRef<'_>, pred: impl Fn(&Element) -> bool) -> bool {
    el.ancestors()
        .any(|node| node.value().as_element().is_some_and(&pred))
}

/// The parts of the page worth reading: the `<main>` element, else the outermost
/// `<article>`s, else `<body>`.
fn content_roots(document: &Html) -> Vec<ElementRef<'_>> {
    let root = document.root_element();
    let visible =
        |el: &ElementRef<'_>| !is_boilerplate(el.value()) && !has_ancestor(el, is_boilerplate);
    if let Some(main) = root.descendent_elements().find(|el| {
        (el.value().name() == "main" || role(el.value()).as_deref() == Some("main")) && visible(el)
    }) {
        return vec![main];
    }
    let articles: Vec<_> = root
        .descendent_elements()
        .filter(|el| {
            el.value().name() == "article"
                && visible(el)
                && !has_ancestor(el, |a| a.name() == "article")
        })
        .collect();
    if !articles.is_empty() {
        return articles;
    }
    match root.child_elements().find(|el| el.value().name() == "body") {
        Some(body) => vec![body],
        None => vec![root],
    }
}

fn role(el: &Element) -> Option<String> {
    el.attr("role").map(|r| r.trim().to_ascii_lowercase())
}

/// Elements that hold no document text: scripts, navigation, forms, hidden parts, cookie
/// banners. (`header`/`footer` are judged by [`render_html`], where their position is known.)
fn is_boilerplate(el: &Element) -> bool {
    let name = el.name();
    if matches!(
        name,
        "head"
            | "script"
            | "style"
            | "noscript"
            | "template"
            | "svg"
            | "iframe"
            | "object"
            | "embed"
            | "canvas"
            | "nav"
            | "aside"
            | "form"
            | "button"
            | "select"
            | "dialog"
    ) {
        return true;
    }
    if el.attr("hidden").is_some() || el.attr("aria-hidden") == Some("true") {
        return true;
    }
    if let Some(role) = role(el) {
        if matches!(
            role.as_str(),
            "navigation"
                | "banner"
                | "contentinfo"
                | "search"
                | "menu"
                | "menubar"
                | "dialog"
                | "alertdialog"
        ) {
            return true;
        }
    }
    if let Some(style) = el.attr("style") {
        let style: String = style
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if style.contains("display:none") || style.contains("visibility:hidden") {
            return true;
        }
    }
    if !matches!(name, "html" | "body" | "main" | "article") {
        let marks = |value: Option<&str>| {
            value.is_some_and(|v| {
                let v = v.to_ascii_lowercase();
                v.contains("cookie") || v.contains("consent") || v.contains("gdpr")
            })
        };
        if marks(el.attr("id")) || marks(el.attr("class")) {
            return true;
        }
    }
    false
}

/// Walks the subtree under `root` (iteratively: deep documents cannot overflow the stack),
/// feeding text and element boundaries to the writer and skipping boilerplate subtrees.
fn render_html(root: ElementRef<'_>, writer: &mut HtmlWriter) {
    let start = *root;
    let mut node = start;
    loop {
        let entered = match node.value() {
            Node::Text(text) => {
                writer.text(text);
                false
            }
            Node::Element(el) => {
                // A header or footer inside a sectioning element belongs to it (an article's
                // title); a top-level one is the site's banner or footer.
                let page_chrome = matches!(el.name(), "header" | "footer")
                    && !node.ancestors().any(|a| {
                        a.value()
                            .as_element()
                            .is_some_and(|a| matches!(a.name(), "article" | "main" | "section"))
                    });
                if page_chrome || is_boilerplate(el) {
                    false
                } else {
                    writer.open(el);
                    true
                }
            }
            _ => false,
        };
        if entered {
            if let Some(child) = node.first_child() {
                node = child;
                continue;
            }
            if let Node::Element(el) = node.value() {
                writer.close(el);
            }
        }
        // Move on: to the next sibling, else up (closing each element left).
        loop {
            if node.id() == start.id() {
                return;
            }
            if let Some(next) = node.next_sibling() {
                node = next;
                break;
            }
            match node.parent() {
                Some(parent) => {
                    node = parent;
                    if let Node::Element(el) = node.value() {
                        writer.close(el);
                    }
                }
                None => return,
            }
        }
    }
}

fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "blockquote"
            | "section"
            | "article"
            | "main"
            | "figure"
            | "table"
            | "dl"
            | "hr"
            | "address"
            | "details"
            | "fieldset"
    )
}

fn is_line(name: &str) -> bool {
    matches!(
        name,
        "div" | "tr" | "dt" | "dd" | "caption" | "figcaption" | "summary" | "center" | "li"
    )
}

/// Builds Markdown-ish text from HTML: collapses whitespace inside text, breaks lines at
/// line-level elements, separates blocks with blank lines.
#[derive(Default)]
struct HtmlWriter {
    out: String,
    /// The line being built.
    line: String,
    /// Put before the current line's first text (`## `, `- `); kept until some text uses it.
    prefix: String,
    /// Whitespace was seen since the last character.
    space: bool,
    /// A table-cell separator to put before the next text on this line.
    cell: bool,
    /// The separator owed before the next line: 0 none yet, 1 newline, 2 blank line.
    brk: u8,
    pre: usize,
    lists: usize,
    heading: bool,
}

impl HtmlWriter {
    fn text(&mut self, text: &str) {
        if self.pre > 0 {
            for (i, part) in text.split('\n').enumerate() {
                if i > 0 {
                    self.line_break();
                }
                if self.line.is_empty() && !part.is_empty() {
                    self.line.push_str(&std::mem::take(&mut self.prefix));
                }
                self.line.push_str(part);
            }
            return;
        }
        for c in text.chars() {
            if c.is_whitespace() {
                self.space = true;
                continue;
            }
            if self.line.is_empty() {
                self.line.push_str(&std::mem::take(&mut self.prefix));
            } else if self.cell {
                self.line.push_str(" | ");
            } else if self.space {
                self.line.push(' ');
            }
            self.space = false;
            self.cell = false;
            self.line.push(c);
        }
    }

    fn flush(&mut self) {
        let line = self.line.trim_end();
        if !line.is_empty() {
            if !self.out.is_empty() {
                self.out.push_str(if self.brk >= 2 { "\n\n" } else { "\n" });
            }
            self.out.push_str(line);
            self.brk = 0;
        }
        self.line.clear();
        self.space = false;
        self.cell = false;
    }

    fn line_break(&mut self) {
        self.flush();
        self.brk = self.brk.max(1);
    }

    fn block_break(&mut self) {
        self.flush();
        self.brk = 2;
    }

    fn open(&mut self, el: &Element) {
        let name = el.name();
        if let Some(level) = heading_level(name) {
            self.block_break();
            self.prefix = format!("{} ", "#".repeat(level));
            self.heading = true;
            return;
        }
        match name {
            "br" if self.heading => self.space = true,
            "br" => self.line_break(),
            "pre" => {
                self.block_break();
                self.pre += 1;
            }
            "ul" | "ol" => {
                if self.lists == 0 {
                    self.block_break();
                } else {
                    self.line_break();
                }
                self.lists += 1;
            }
            "li" => {
                self.line_break();
                let depth = self.lists.saturating_sub(1).min(MAX_LIST_INDENT);
                self.prefix = format!("{}- ", "  ".repeat(depth));
            }
            "td" | "th" if !self.line.is_empty() => self.cell = true,
            name if is_block(name) => self.block_break(),
            name if is_line(name) => self.line_break(),
            _ => {}
        }
    }

    fn close(&mut self, el: &Element) {
        let name = el.name();
        if heading_level(name).is_some() {
            self.block_break();
            self.prefix.clear();
            self.heading = false;
            return;
        }
        match name {
            "pre" => {
                self.block_break();
                self.pre = self.pre.saturating_sub(1);
            }
            "ul" | "ol" => {
                self.lists = self.lists.saturating_sub(1);
                if self.lists == 0 {
                    self.block_break();
                } else {
                    self.line_break();
                }
            }
            "li" => {
                self.line_break();
                self.prefix.clear();
            }
            name if is_block(name) => self.block_break(),
            name if is_line(name) => self.line_break(),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PDF

fn extract_pdf(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(ExtractError::invalid(
            Format::Pdf,
            "the file does not start with %PDF-",
        ));
    }
    // pdf-extract (and lopdf under it) can panic on malformed input.
    let (text, title) = match catch_unwind(AssertUnwindSafe(|| pdf_text(bytes))) {
        Ok(result) => result.map_err(|e| ExtractError::invalid(Format::Pdf, e))?,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown error".to_string());
            tracing::warn!(%message, "the PDF reader panicked");
            return Err(ExtractError::invalid(
                Format::Pdf,
                format!("the PDF reader failed: {message}"),
            ));
        }
    };
    Ok(Extracted {
        text,
        title,
        markdown: false,
    })
}

/// What `pdf_extract::extract_text_from_mem` does, keeping the parsed document to read its
/// title as well.
fn pdf_text(bytes: &[u8]) -> Result<(String, Option<String>), String> {
    let mut doc = pdf_extract::Document::load_mem(bytes).map_err(|e| e.to_string())?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err("the PDF is encrypted".to_string());
    }
    let title = pdf_title(&doc);
    let mut text = String::new();
    let mut output = pdf_extract::PlainTextOutput::new(&mut text);
    pdf_extract::output_doc(&doc, &mut output).map_err(|e| e.to_string())?;
    Ok((text, title))
}

/// The document information dictionary's `/Title`.
fn pdf_title(doc: &pdf_extract::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let (_, info) = doc.dereference(info).ok()?;
    let title = info.as_dict().ok()?.get(b"Title").ok()?;
    let (_, title) = doc.dereference(title).ok()?;
    clean_title(&pdf_extract::decode_text_string(title).ok()?)
}

// ---------------------------------------------------------------------------------------------
// DOCX

fn extract_docx(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let invalid = |reason: String| ExtractError::invalid(Format::Docx, reason);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| invalid(format!("not a zip archive ({e})")))?;
    let document = read_zip_part(&mut archive, "word/document.xml")
        .map_err(invalid)?
        .ok_or_else(|| invalid("word/document.xml is missing".to_string()))?;
    let body = DocxText::parse(&document)
        .map_err(|e| invalid(format!("word/document.xml is malformed ({e})")))?;
    // The metadata is optional: a broken core.xml does not make the document unreadable.
    let title = read_zip_part(&mut archive, "docProps/core.xml")
        .ok()
        .flatten()
        .and_then(|core| docx_core_title(&core))
        .or(body.first_heading);
    Ok(Extracted {
        text: body.blocks.join("\n\n"),
        title,
        markdown: true,
    })
}

/// Reads a part of a zip as UTF-8 text; `None` if the archive has no such part.
fn read_zip_part(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<String>, String> {
    let file = match archive.by_name(name) {
        Ok(file) => file,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("cannot open {name} ({e})")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_DOCX_PART_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {name} ({e})"))?;
    if bytes.len() as u64 > MAX_DOCX_PART_BYTES {
        return Err(format!(
            "{name} is larger than {MAX_DOCX_PART_BYTES} bytes uncompressed"
        ));
    }
    decode_text(&bytes)
        .map(Cow::into_owned)
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

/// The paragraphs of a `word/document.xml`.
#[derive(Default)]
struct DocxText {
    blocks: Vec<String>,
    first_heading: Option<String>,
    /// The paragraph being read, with its heading level.
    paragraph: Option<(String, Option<usize>)>,
    in_text: bool,
    in_paragraph_properties: bool,
    table_depth: usize,
    row: Vec<String>,
    cell: String,
}

impl DocxText {
    fn parse(xml: &str) -> Result<DocxText, quick_xml::Error> {
        let mut reader = Reader::from_str(xml);
        let mut doc = DocxText::default();
        loop {
            match reader.read_event()? {
                Event::Start(e) => {
                    let name = e.name();
                    match name.local_name().as_ref() {
                        // Word writes text boxes twice: modern markup and a VML fallback.
                        "Fallback" => {
                            reader.read_to_end(e.to_end().name())?;
                        }
                        "p" => doc.start_paragraph(),
                        "pPr" => doc.in_paragraph_properties = true,
                        "t" => doc.in_text = true,
                        "tbl" => doc.table_depth += 1,
                        "tr" if doc.table_depth == 1 => doc.row.clear(),
                        "tc" if doc.table_depth == 1 => doc.cell.clear(),
                        _ => doc.empty_element(&e),
                    }
                }
                Event::Empty(e) => {
                    if e.name().local_name().as_ref() == "p" {
                        doc.start_paragraph();
                        doc.end_paragraph();
                    } else {
                        doc.empty_element(&e);
                    }
                }
                Event::End(e) => match e.name().local_name().as_ref() {
                    "p" => doc.end_paragraph(),
                    "pPr" => doc.in_paragraph_properties = false,
                    "t" => doc.in_text = false,
                    "tbl" => doc.table_depth = doc.table_depth.saturating_sub(1),
                    "tc" if doc.table_depth == 1 => {
                        let cell = std::mem::take(&mut doc.cell);
                        doc.row
                            .push(cell.split_whitespace().collect::<Vec<_>>().join(" "));
                    }
                    "tc" if doc.table_depth > 1 => doc.cell.push(' '),
                    "tr" if doc.table_depth == 1 => {
                        let row = std::mem::take(&mut doc.row);
                        if row.iter().any(|cell| !cell.is_empty()) {
                            doc.blocks.push(row.join(" | "));
                        }
                    }
                    _ => {}
                },
                Event::Text(t) if doc.in_text => doc.push_text(&t.xml10_content()),
                Event::CData(t) if doc.in_text => doc.push_text(&t.xml10_content()),
                Event::GeneralRef(r) if doc.in_text => {
                    if let Some(c) = r.resolve_char_ref()? {
                        doc.push_text(c.encode_utf8(&mut [0; 4]));
                    } else if let Some(s) = quick_xml::escape::resolve_xml_entity(&r) {
                        doc.push_text(s);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        doc.end_paragraph();
        Ok(doc)
    }

    /// Self-closing run content (`w:tab`, `w:br`) and paragraph style (`w:pStyle`).
    fn empty_element(&mut self, e: &quick_xml::events::BytesStart<'_>) {
        let name = e.name();
        match name.local_name().as_ref() {
            "tab" if !self.in_paragraph_properties => self.push_text("\t"),
            "br" | "cr" if !self.in_paragraph_properties => self.push_text("\n"),
            "noBreakHyphen" => self.push_text("-"),
            "pStyle" => {
                let style = e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.local_name().as_ref() == "val")
                    .map(|a| a.value.into_owned());
                if let (Some(style), Some((_, level))) = (style, self.paragraph.as_mut()) {
                    *level = docx_heading_level(&style);
                }
            }
            _ => {}
        }
    }

    fn start_paragraph(&mut self) {
        // A paragraph inside another (a text box): end the outer one here.
        if self.paragraph.is_some() {
            self.end_paragraph();
        }
        self.paragraph = Some((String::new(), None));
    }

    fn push_text(&mut self, text: &str) {
        self.paragraph
            .get_or_insert_with(|| (String::new(), None))
            .0
            .push_str(text);
    }

    fn end_paragraph(&mut self) {
        let Some((text, level)) = self.paragraph.take() else {
            return;
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if self.table_depth > 0 {
            if !self.cell.is_empty() {
                self.cell.push(' ');
            }
            self.cell.push_str(text);
            return;
        }
        match level {
            Some(level) => {
                let heading = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if self.first_heading.is_none() {
                    self.first_heading = clean_title(&heading);
                }
                self.blocks.push(format!("{} {heading}", "#".repeat(level)));
            }
            None => self.blocks.push(text.to_string()),
        }
    }
}

/// `Heading2` / `heading 2` -> 2, `Title` -> 1; other styles are body text.
fn docx_heading_level(style: &str) -> Option<usize> {
    let style = style.trim().to_ascii_lowercase();
    if style == "title" {
        return Some(1);
    }
    let digits = style.strip_prefix("heading")?.trim_start();
    let level: usize = digits
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    (level > 0).then_some(level.min(6))
}

/// `dc:title` from `docProps/core.xml`.
fn docx_core_title(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.name().local_name().as_ref() == "title" => in_title = true,
            Event::End(e) if e.name().local_name().as_ref() == "title" => break,
            Event::Text(t) if in_title => title.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_title => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    title.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_xml_entity(&r) {
                    title.push_str(s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    clean_title(&title)
}

// ---------------------------------------------------------------------------------------------
// CSV

fn extract_csv(bytes: &[u8], limit: usize) -> Result<Extracted, ExtractError> {
    let invalid = |reason: String| ExtractError::invalid(Format::Csv, reason);
    let text = decode_text(bytes).map_err(invalid)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(csv_delimiter(&text))
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| invalid(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let column = |i: usize| match headers.get(i) {
        Some(h) if !h.is_empty() => h.clone(),
        _ => format!("column {}", i + 1),
    };
    let mut blocks = Vec::new();
    let mut size = 0;
    for record in reader.records() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let mut block = String::new();
        for (i, value) in record.iter().enumerate() {
            let value = clean_value(value);
            if value.is_empty() {
                continue;
            }
            if !block.is_empty() {
                block.push('\n');
            }
            block.push_str(&column(i));
            block.push_str(": ");
            block.push_str(&value);
            if size + block.len() > limit {
                return Err(ExtractError::TooLarge { limit });
            }
        }
        if !block.is_empty() {
            size += block.len() + 2;
            blocks.push(block);
        }
    }
    Ok(Extracted {
        text: blocks.join("\n\n"),
        title: None,
        markdown: false,
    })
}

/// Comma, semicolon or tab: whichever the header line (outside quotes) has most of.
fn csv_delimiter(text: &str) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for b in text.bytes() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            _ if !quoted => {
                if let Some(entry) = counts.iter_mut().find(|(d, _)| *d == b) {
                    entry.1 += 1;
                }
            }
            _ => {}
        }
    }
    // Ties keep the earlier (comma first).
    counts
        .iter()
        .fold(
            (b',', 0),
            |best, &(d, n)| if n > best.1 { (d, n) } else { best },
        )
        .0
}

// ---------------------------------------------------------------------------------------------
// JSON

fn extract_json(bytes: &[u8], limit: usize) -> Result<Extracted, ExtractError> {
    let invalid = |reason: String| ExtractError::invalid(Format::Json, reason);
    let text = decode_text(bytes).map_err(invalid)?;
    let records = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(value) => vec![value],
        Err(whole) => {
            // JSON Lines: one value per non-empty line. Only if the first line is a complete
            // value by itself; otherwise the document is plain broken JSON.
            let mut lines = text
                .lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty());
            let Some((_, first)) = lines.next() else {
                return Err(invalid(whole.to_string()));
            };
            let first = serde_json::from_str::<serde_json::Value>(first)
                .map_err(|_| invalid(whole.to_string()))?;
            let mut records = vec![first];
            for (n, line) in lines {
                records.push(
                    serde_json::from_str(line)
                        .map_err(|e| invalid(format!("line {}: {e}", n + 1)))?,
                );
            }
            records
        }
    };
    let mut flat = Flattened {
        lines: Vec::new(),
        size: 0,
        limit,
    };
    let mut blocks = Vec::new();
    for record in &records {
        flatten_json("", record, &mut flat)?;
        if !flat.lines.is_empty() {
            blocks.push(std::mem::take(&mut flat.lines).join("\n"));
        }
    }
    Ok(Extracted {
        text: blocks.join("\n\n"),
        title: None,
        markdown: false,
    })
}

/// Lines of flattened JSON and the bytes written so far, within `limit`.
struct Flattened {
    lines: Vec<String>,
    size: usize,
    limit: usize,
}

/// `{"a": {"b": 1}, "c": [true]}` -> `a.b: 1`, `c[0]: true`; strings unquoted; nulls and empty
/// strings left out. (serde_json's recursion limit bounds the depth; every line repeats its
/// whole key path, so the output is bounded by `out.limit`.)
fn flatten_json(
    key: &str,
    value: &serde_json::Value,
    out: &mut Flattened,
) -> Result<(), ExtractError> {
    use serde_json::Value;
    let scalar = match value {
        Value::Null => return Ok(()),
        Value::Object(map) => {
            for (name, value) in map {
                let key = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                flatten_json(&key, value, out)?;
            }
            return Ok(());
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                flatten_json(&format!("{key}[{i}]"), value, out)?;
            }
            return Ok(());
        }
        Value::String(s) => clean_value(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
    };
    if scalar.is_empty() {
        return Ok(());
    }
    let line = if key.is_empty() {
        scalar
    } else {
        format!("{key}: {scalar}")
    };
    out.size += line.len() + 1;
    if out.size > out.limit {
        return Err(ExtractError::TooLarge { limit: out.limit });
    }
    out.lines.push(line);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// What a 1 MiB file may yield.
    const LIMIT: usize = 20 << 20;

    fn text_of(format: Format, bytes: &[u8]) -> Extracted {
        extract(format, bytes, LIMIT).unwrap()
    }

    /// A one-page PDF with a Helvetica text object and an Info title, offsets computed.
    fn minimal_pdf(text: &str, title: &str) -> Vec<u8> {
        let content = format!("BT\n/F1 24 Tf\n72 700 Td\n({text}) Tj\nET\n");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_string(),
            format!(
                "<< /Length {} >>\nstream\n{content}endstream",
                content.len()
            ),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_string(),
            format!("<< /Title ({title}) /Producer (test) >>"),
        ];
        let mut pdf = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
        }
        let xref = pdf.len();
        pdf.extend_from_slice(format!("xref\n0 {}\n", objects.len() + 1).as_bytes());
        pdf.extend_from_slice(b"0000000000 65535 f \n");
        for offset in offsets {
            pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
        }
        pdf.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        pdf
    }

    fn docx(document_xml: &str, core_xml: Option<&str>) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("[Content_Types].xml", options).unwrap();
        zip.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
        zip.start_file("word/document.xml", options).unwrap();
        zip.write_all(document_xml.as_bytes()).unwrap();
        if let Some(core) = core_xml {
            zip.start_file("docProps/core.xml", options).unwrap();
            zip.write_all(core.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    const DOCUMENT_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
  <w:body>
    <w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr><w:r><w:t>Quarterly report</w:t></w:r></w:p>
    <w:p><w:pPr><w:pStyle w:val="Heading2"/><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>
      <w:r><w:t xml:space="preserve">Sales </w:t></w:r><w:r><w:t>&amp; costs</w:t></w:r></w:p>
    <w:p><w:r><w:t>Revenue</w:t></w:r><w:r><w:tab/><w:t>grew.</w:t></w:r><w:r><w:br/><w:t>Second line</w:t></w:r></w:p>
    <w:p/>
    <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Region</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Total</w:t></w:r></w:p></w:tc></w:tr>
      <w:tr><w:tc><w:p><w:r><w:t>North</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>42</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
    <w:p><w:r><w:delText>deleted words</w:delText><w:t>Kept words</w:t></w:r></w:p>
    <w:sectPr/>
  </w:body>
</w:document>"#;

    #[test]
    fn plain_text_is_normalised() {
        let out = text_of(
            Format::Text,
            b"\xEF\xBB\xBFline one  \r\nline two\r\n\r\n\r\n\r\nend\r\n",
        );
        assert_eq!(out.text, "line one\nline two\n\nend");
        assert_eq!(out.title, None);
        assert!(!out.markdown);
    }

    #[test]
    fn utf16_text_with_bom_is_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "héllo wörld".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(Format::detect("", None, &bytes).unwrap(), Format::Text);
        assert_eq!(text_of(Format::Text, &bytes).text, "héllo wörld");
    }

    #[test]
    fn markdown_keeps_structure_and_takes_the_first_heading_as_title() {
        let md = "```sh\n# not a title\n```\n\n# Install guide #\r\n\r\nSome *text*.\n\n## Step 1\nRun it.\n";
        let out = text_of(Format::Markdown, md.as_bytes());
        assert_eq!(out.title.as_deref(), Some("Install guide"));
        assert!(out.markdown);
        assert!(out.text.contains("## Step 1\nRun it."));
        assert!(!out.text.contains('\r'));
    }

    #[test]
    fn html_drops_boilerplate_and_prefers_main() {
        let html = r#"<!DOCTYPE html>
<html><head><title>  The   Page </title><style>body{color:red}</style>
<script>var x = "script text";</script></head>
<body>
  <header><a href="/">Site banner</a></header>
  <nav><ul><li>Home</li><li>About</li></ul></nav>
  <div class="cookie-banner">We use cookies <button>Accept</button></div>
  <main>
    <h1>Main   heading</h1>
    <p>First <b>paragraph</b>
       spans lines.</p>
    <h2>Section</h2>
    <ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>
    <table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>31</td></tr></table>
    <p>Line<br>break</p>
    <pre>fn main() {
    indented();
}</pre>
    <div hidden>hidden text</div>
    <form><label>Search</label><input></form>
  </main>
  <aside>Related links</aside>
  <footer>Copyright</footer>
</body></html>"#;
        let out = text_of(Format::Html, html.as_bytes());
        assert_eq!(out.title.as_deref(), Some("The Page"));
        assert!(out.markdown);
        let expected = "# Main heading\n\n\
                        First paragraph spans lines.\n\n\
                        ## Section\n\n\
                        - one\n- two\n  - nested\n\n\
                        Name | Age\nAnn | 31\n\n\
                        Line\nbreak\n\n\
                        fn main() {\n    indented();\n}";
        assert_eq!(out.text, expected);
        for junk in [
            "script text",
            "color:red",
            "Site banner",
            "Home",
            "cookies",
            "Accept",
            "hidden text",
            "Search",
            "Related",
            "Copyright",
        ] {
            assert!(
                !out.text.contains(junk),
                "{junk:?} leaked into {:?}",
                out.text
            );
        }
    }

    #[test]
    fn html_takes_articles_when_there_is_no_main() {
        let html = r#"<html><body>
            <div class="menu">Menu text</div>
            <article><header><h1>Post title</h1><p>by Ann</p></header><p>Post body.</p>
              <footer>Tags: x</footer></article>
            <aside><article>Related article</article></aside>
            <article><h2>Second post</h2><p>More.</p></article>
            <footer>Site footer</footer>
        </body></html>"#;
        let out = text_of(Format::Html, html.as_bytes());
        assert_eq!(out.title.as_deref(), Some("Post title"));
        assert!(
            out.text.starts_with("# Post title\n\nby Ann\n\nPost body."),
            "{}",
            out.text
        );
        assert!(out.text.contains("## Second post\n\nMore."));
        assert!(!out.text.contains("Menu text"));
        assert!(!out.text.contains("Related article"));
        assert!(!out.text.contains("Site footer"));
    }

    #[test]
    fn html_without_landmarks_uses_the_body() {
        let html = "<p>Just &amp; a <i>fragment</i></p><p>Two</p>";
        let out = text_of(Format::Html, html.as_bytes());
        assert_eq!(out.text, "Just & a fragment\n\nTwo");
        assert_eq!(out.title, None);
    }

    #[test]
    fn pdf_text_and_title_come_out() {
        let pdf = minimal_pdf("Hello PDF world", "Test Title");
        assert_eq!(Format::detect("upload", None, &pdf).unwrap(), Format::Pdf);
        let out = text_of(Format::Pdf, &pdf);
        assert!(out.text.contains("Hello PDF world"), "{:?}", out.text);
        assert_eq!(out.title.as_deref(), Some("Test Title"));
        assert!(!out.markdown);
    }

    #[test]
    fn corrupt_pdf_is_invalid_without_panicking() {
        for bytes in [
            &b"%PDF-1.4 garbage"[..],
            b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\nendobj\nxref\n0 1\ntrailer\n<<>>\n%%EOF",
            b"%PDF-\x00\xff\x00\xff",
        ] {
            match extract(Format::Pdf, bytes, LIMIT) {
                Err(ExtractError::Invalid { format: Format::Pdf, .. }) => {}
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn pdf_extension_with_other_bytes_is_invalid() {
        let format = Format::detect("report.pdf", None, b"<html>not a pdf</html>").unwrap();
        assert_eq!(format, Format::Pdf);
        assert!(matches!(
            extract(format, b"<html>not a pdf</html>", LIMIT),
            Err(ExtractError::Invalid {
                format: Format::Pdf,
                ..
            })
        ));
    }

    #[test]
    fn docx_paragraphs_headings_and_tables() {
        let core = r#"<?xml version="1.0"?><cp:coreProperties
            xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
            xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Q3 &amp; Q4</dc:title></cp:coreProperties>"#;
        let bytes = docx(DOCUMENT_XML, Some(core));
        assert_eq!(Format::detect("blob", None, &bytes).unwrap(), Format::Docx);
        let out = text_of(Format::Docx, &bytes);
        assert_eq!(
            out.text,
            "# Quarterly report\n\n## Sales & costs\n\nRevenue\tgrew.\nSecond line\n\n\
             Region | Total\n\nNorth | 42\n\nKept words"
        );
        assert_eq!(out.title.as_deref(), Some("Q3 & Q4"));
        assert!(out.markdown);
    }

    #[test]
    fn docx_title_falls_back_to_the_first_heading() {
        let out = text_of(Format::Docx, &docx(DOCUMENT_XML, None));
        assert_eq!(out.title.as_deref(), Some("Quarterly report"));
    }

    #[test]
    fn docx_that_is_not_a_zip_or_lacks_the_document_is_invalid() {
        assert!(matches!(
            extract(Format::Docx, b"plain text, not a zip", LIMIT),
            Err(ExtractError::Invalid {
                format: Format::Docx,
                ..
            })
        ));
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("other.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"hello").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert!(matches!(
            Format::detect("archive", None, &bytes),
            Err(ExtractError::Unsupported(m)) if m.contains("zip")
        ));
        assert!(matches!(
            extract(Format::Docx, &bytes, LIMIT),
            Err(ExtractError::Invalid {
                format: Format::Docx,
                ..
            })
        ));
    }

    #[test]
    fn csv_rows_become_blocks() {
        let csv =
            "\u{feff}name,city,note\r\nAnn,Paris,\"likes, commas\"\r\nBob,,\r\nCy,Rome,x,extra\r\n";
        let out = text_of(Format::Csv, csv.as_bytes());
        assert_eq!(
            out.text,
            "name: Ann\ncity: Paris\nnote: likes, commas\n\nname: Bob\n\n\
             name: Cy\ncity: Rome\nnote: x\ncolumn 4: extra"
        );
        assert!(!out.markdown);
    }

    #[test]
    fn csv_semicolons_are_detected() {
        let out = text_of(Format::Csv, b"a;b\n1;2\n");
        assert_eq!(out.text, "a: 1\nb: 2");
    }

    #[test]
    fn csv_that_is_not_utf8_is_invalid() {
        assert!(matches!(
            extract(Format::Csv, b"a,b\n\xff\xfe\xfd,1\n", LIMIT),
            Err(ExtractError::Invalid {
                format: Format::Csv,
                ..
            })
        ));
    }

    #[test]
    fn json_array_object_and_lines() {
        let array = r#"[{"name": "Ann", "tags": ["a", "b"], "address": {"city": "Paris", "zip": null}},
                        {"name": "Bob", "age": 41}, "just text"]"#;
        let out = text_of(Format::Json, array.as_bytes());
        let blocks: Vec<&str> = out.text.split("\n\n").collect();
        assert_eq!(blocks.len(), 3, "{}", out.text);
        let first: Vec<&str> = blocks[0].lines().collect();
        for line in [
            "name: Ann",
            "tags[0]: a",
            "tags[1]: b",
            "address.city: Paris",
        ] {
            assert!(first.contains(&line), "{line:?} missing in {first:?}");
        }
        assert!(!blocks[0].contains("zip"));
        assert!(blocks[1].contains("age: 41"));
        assert_eq!(blocks[2], "just text");

        let object = text_of(Format::Json, br#"{"title": "One", "body": "Two\n\nlines"}"#);
        assert!(!object.text.contains("\n\n"), "one record stays one block");
        assert!(object.text.contains("body: Two\nlines"));

        let lines = text_of(Format::Json, b"{\"a\": 1}\n\n{\"a\": 2}\n[3]\n");
        assert_eq!(lines.text, "a: 1\n\na: 2\n\n[0]: 3");
    }

    #[test]
    fn invalid_json_is_invalid() {
        for bytes in [&b"{\"a\": "[..], b"{\"a\": 1}\n{broken\n", b"[1, 2,]"] {
            assert!(matches!(
                extract(Format::Json, bytes, LIMIT),
                Err(ExtractError::Invalid {
                    format: Format::Json,
                    ..
                })
            ));
        }
    }

    #[test]
    fn detect_by_extension_content_type_and_magic() {
        let cases: &[(&str, Option<&str>, &[u8], Format)] = &[
            ("notes.TXT", None, b"x", Format::Text),
            ("server.log", Some("application/pdf"), b"x", Format::Text),
            ("README.md", None, b"x", Format::Markdown),
            ("a/b/page.HTM", None, b"x", Format::Html),
            ("doc.pdf", None, b"x", Format::Pdf),
            ("doc.docx", None, b"x", Format::Docx),
            ("data.csv", None, b"x", Format::Csv),
            ("data.ndjson", None, b"x", Format::Json),
            ("data.jsonl", None, b"x", Format::Json),
            (
                "download",
                Some("text/plain; charset=utf-8"),
                b"x",
                Format::Text,
            ),
            ("download", Some("Text/Markdown"), b"x", Format::Markdown),
            (
                "download",
                Some("application/xhtml+xml"),
                b"x",
                Format::Html,
            ),
            ("download", Some("application/pdf"), b"x", Format::Pdf),
            ("download", Some(DOCX_CONTENT_TYPE), b"x", Format::Docx),
            ("download", Some("text/csv"), b"x", Format::Csv),
            ("download", Some("application/x-ndjson"), b"x", Format::Json),
            (
                "download",
                Some("application/octet-stream"),
                b"%PDF-1.7",
                Format::Pdf,
            ),
            ("", None, b"%PDF-1.4\n", Format::Pdf),
            ("", None, b"  \n<!DOCTYPE HTML><html></html>", Format::Html),
            ("", None, b"<html lang=en>", Format::Html),
            ("", None, b"plain words", Format::Text),
            ("noext", None, b"", Format::Text),
        ];
        for (name, content_type, bytes, expected) in cases {
            assert_eq!(
                Format::detect(name, *content_type, bytes).unwrap(),
                *expected,
                "{name} {content_type:?}"
            );
        }
    }

    #[test]
    fn random_binary_is_unsupported() {
        let bytes: Vec<u8> = (0..512u32).map(|i| (i * 7919 % 251) as u8).collect();
        match Format::detect("blob.bin", None, &bytes) {
            Err(ExtractError::Unsupported(m)) => assert!(m.contains(".bin"), "{m}"),
            other => panic!("expected Unsupported, got {other:?}"),
        }
        match Format::detect("blob", Some("image/png"), b"\x89PNG\r\n\x1a\n\x00\x00") {
            Err(ExtractError::Unsupported(m)) => assert_eq!(m, "image/png"),
            other => panic!("expected Unsupported, got {other:?}"),
        }
        assert!(matches!(
            Format::detect("", None, b"\x00\x01\x02"),
            Err(ExtractError::Unsupported(_))
        ));
    }

    #[test]
    fn empty_files_are_empty() {
        for format in [
            Format::Text,
            Format::Markdown,
            Format::Html,
            Format::Pdf,
            Format::Docx,
            Format::Csv,
            Format::Json,
        ] {
            assert!(matches!(
                extract(format, b"", LIMIT),
                Err(ExtractError::Empty)
            ));
            assert!(matches!(
                extract(format, b" \n\t ", LIMIT),
                Err(ExtractError::Empty)
            ));
        }
        let format = Format::detect("empty", None, b"").unwrap();
        assert!(matches!(
            extract(format, b"", LIMIT),
            Err(ExtractError::Empty)
        ));
        // Structure but no text.
        let structured: [(Format, &[u8]); 4] = [
            (
                Format::Html,
                b"<html><body><script>x()</script><nav>menu</nav></body></html>",
            ),
            (Format::Csv, b"a,b\n"),
            (Format::Json, b"[]"),
            (Format::Json, b"{\"a\": null}"),
        ];
        for (format, bytes) in structured {
            assert!(matches!(
                extract(format, bytes, LIMIT),
                Err(ExtractError::Empty)
            ));
        }
        let no_text = docx(
            "<w:document xmlns:w=\"w\"><w:body><w:p/></w:body></w:document>",
            None,
        );
        assert!(matches!(
            extract(Format::Docx, &no_text, LIMIT),
            Err(ExtractError::Empty)
        ));
    }

    #[test]
    fn invalid_utf8_text_is_invalid() {
        for format in [Format::Text, Format::Markdown] {
            match extract(format, b"caf\xe9 au lait", LIMIT) {
                Err(ExtractError::Invalid { format: f, .. }) => assert_eq!(f, format),
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn format_serialises_lowercase() {
        assert_eq!(serde_json::to_string(&Format::Docx).unwrap(), "\"docx\"");
        assert_eq!(
            serde_json::from_str::<Format>("\"markdown\"").unwrap(),
            Format::Markdown
        );
        assert_eq!(Format::Json.as_str(), "json");
        assert_eq!(Format::Pdf.to_string(), "pdf");
    }

    #[test]
    fn docx_heading_styles() {
        assert_eq!(docx_heading_level("Heading1"), Some(1));
        assert_eq!(docx_heading_level("heading 3"), Some(3));
        assert_eq!(docx_heading_level("Heading9"), Some(6));
        assert_eq!(docx_heading_level("Title"), Some(1));
        assert_eq!(docx_heading_level("HeadingChar"), None);
        assert_eq!(docx_heading_level("Normal"), None);
    }

    #[test]
    fn a_csv_that_repeats_long_headers_stops_at_the_limit() {
        // 1 000 columns with 2 000-byte names and one-byte values: each value repeats its
        // column's name, so 2 MB of file would become 200 MB of text.
        let header: Vec<String> = (0..1000)
            .map(|i| format!("{i}{}", "h".repeat(2000)))
            .collect();
        let row = vec!["1"; 1000].join(",") + "\n";
        let file = format!("{}\n{}", header.join(","), row.repeat(100)).into_bytes();
        let limit = text_limit(file.len(), usize::MAX);
        assert_eq!(limit, file.len() * MAX_EXPANSION);
        match extract(Format::Csv, &file, limit) {
            Err(ExtractError::TooLarge { limit: l }) => assert_eq!(l, limit),
            other => panic!("expected TooLarge, got {:?}", other.map(|e| e.text.len())),
        }
    }

    #[test]
    fn json_with_long_nested_keys_stops_at_the_limit() {
        // 100 levels of 1 000-byte keys over 20 000 leaves: each leaf's line repeats 100 kB.
        let key = "k".repeat(1000);
        let file = format!(
            "{}[{}]{}",
            format!("{{\"{key}\":").repeat(100),
            vec!["1"; 20_000].join(","),
            "}".repeat(100)
        );
        let limit = text_limit(file.len(), usize::MAX);
        assert!(matches!(
            extract(Format::Json, file.as_bytes(), limit),
            Err(ExtractError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_absolute_cap_applies_to_ordinary_files_too() {
        let file = "plain words ".repeat(200_000).into_bytes();
        assert!(extract(Format::Text, &file, text_limit(file.len(), 64 << 20)).is_ok());
        let small_cap = text_limit(file.len(), 1 << 20);
        assert_eq!(small_cap, 1 << 20);
        assert!(matches!(
            extract(Format::Text, &file, small_cap),
            Err(ExtractError::TooLarge { .. })
        ));
        // A small file may always yield 1 MiB.
        assert_eq!(text_limit(10, usize::MAX), 1 << 20);
    }

    #[test]
    fn html_depth_counts_what_nests() {
        assert_eq!(html_depth("<div><div><p>a<br>b</div></div>"), 2);
        assert_eq!(html_depth("<ul><li>a<li>b<li>c</ul><ul><li>d</ul>"), 1);
        assert_eq!(
            html_depth("<div/><img src=x><!-- <div><div> --><span>x</span>"),
            1
        );
        assert_eq!(
            html_depth("<script>if (a<b) {'<div><div>'}</script><b>x</b>"),
            1
        );
        assert_eq!(html_depth(&"<div>".repeat(600)), 600);
    }

    #[test]
    fn html_nested_past_the_limit_is_refused_before_parsing() {
        let html = "<section>".repeat(MAX_HTML_DEPTH + 1);
        assert!(matches!(
            extract(Format::Html, html.as_bytes(), LIMIT),
            Err(ExtractError::Invalid { format: Format::Html, reason }) if reason.contains("nested")
        ));
    }

    #[test]
    fn deeply_nested_lists_do_not_indent_without_end() {
        let depth = MAX_HTML_DEPTH / 2 - 2;
        let mut html = String::from("<html><body><main>");
        for _ in 0..depth {
            html.push_str("<ul><li>item");
        }
        html.push_str("</main></body></html>");
        let text = extract(Format::Html, html.as_bytes(), LIMIT).unwrap().text;
        let widest = text.lines().map(str::len).max().unwrap_or(0);
        assert!(widest <= 2 * MAX_LIST_INDENT + "- item".len(), "{widest}");
    }
}
