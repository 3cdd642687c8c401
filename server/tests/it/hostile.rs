//! Hostile files, built by hand so that no test compresses gigabytes: decompression bombs,
//! self-referencing PDFs, documents that expand when flattened.

use std::io::Write;

/// A raw DEFLATE stream (one fixed-Huffman block) that inflates to `n` zero bytes: a literal
/// zero, then copies of 258 bytes at distance 1. 13 bits per 258 bytes: about 1:160.
pub fn deflate_zeros(n: usize) -> Vec<u8> {
    let mut bits = BitWriter::default();
    bits.put(1, 1); // final block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    let mut left = n.saturating_sub(1);
    while left >= 258 {
        bits.code(0xC5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    bits.finish()
}

/// The same, in a zlib wrapper (what PDF's FlateDecode reads).
pub fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    out.extend(deflate_zeros(n));
    // Adler-32 of n zeros: a = 1, b = n mod 65521.
    let adler = ((n % 65521) as u32) << 16 | 1;
    out.extend(adler.to_be_bytes());
    out
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    len: u32,
}

impl BitWriter {
    /// `n` bits of `value`, least significant first (DEFLATE's header fields).
    fn put(&mut self, value: u64, n: u32) {
        self.acc |= value << self.len;
        self.len += n;
        while self.len >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    /// A Huffman code of `n` bits, most significant first.
    fn code(&mut self, code: u64, n: u32) {
        let reversed = (0..n).fold(0, |r, i| r | ((code >> i) & 1) << (n - 1 - i));
        self.put(reversed, n);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A PDF of these objects (numbered from 1; object 1 is the catalog) with a correct xref.
pub fn pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        writeln!(out, "{} 0 obj", i + 1).unwrap();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).unwrap();
    for offset in offsets {
        writeln!(out, "{offset:010} 00000 n ").unwrap();
    }
    write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    )
    .unwrap();
    out
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\nendstream");
    out
}

/// A one-page PDF whose page content is `content` (with `dict` entries such as a filter) and
/// whose resources are `resources`; `extra` objects follow as 5, 6, …
fn one_page(content: Vec<u8>, resources: &str, extra: Vec<Vec<u8>>) -> Vec<u8> {
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources {resources} >>"
        )
        .into_bytes(),
        content,
    ];
    objects.extend(extra);
    pdf(&objects)
}

/// A page whose content stream inflates to `n` bytes.
pub fn pdf_bomb(n: usize) -> Vec<u8> {
    one_page(
        stream("/Filter /FlateDecode", &zlib_zeros(n)),
        "<< >>",
        Vec::new(),
    )
}

/// A page that draws a form which draws itself: pdf-extract recurses until the stack
/// overflows, which no `catch_unwind` can catch.
pub fn pdf_drawing_itself() -> Vec<u8> {
    one_page(
        stream("", b"/X0 Do"),
        "<< /XObject << /X0 5 0 R >> >>",
        vec![stream(
            "/Type /XObject /Subtype /Form /BBox [0 0 1 1] /Resources << /XObject << /X0 5 0 R >> >>",
            b"/X0 Do",
        )],
    )
}

/// A DOCX whose `word/document.xml` declares 1 000 bytes but inflates to `n`.
pub fn docx_bomb(n: usize) -> Vec<u8> {
    let name = b"word/document.xml";
    let data = deflate_zeros(n);
    let declared: u32 = 1000;
    let mut out = Vec::new();
    // Local file header: deflate, no data descriptor, a made-up CRC.
    out.extend(0x0403_4b50u32.to_le_bytes());
    out.extend([20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
    out.extend(0xdead_beefu32.to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(declared.to_le_bytes());
    out.extend((name.len() as u16).to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&data);
    let directory = out.len();
    // Central directory entry.
    out.extend(0x0201_4b50u32.to_le_bytes());
    out.extend([20, 0, 20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
    out.extend(0xdead_beefu32.to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(declared.to_le_bytes());
    out.extend((name.len() as u16).to_le_bytes());
    out.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(name);
    let size = out.len() - directory;
    // End of central directory.
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend((size as u32).to_le_bytes());
    out.extend((directory as u32).to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A CSV of 1 000 columns with 2 000-byte names and one-byte values, `rows` rows: every value
/// repeats its column's name when flattened (about 1 000× the file).
pub fn csv_bomb(rows: usize) -> Vec<u8> {
    let columns = 1000;
    let header: Vec<String> = (0..columns)
        .map(|i| format!("{i}{}", "h".repeat(2000)))
        .collect();
    let mut file = header.join(",") + "\n";
    let row = vec!["1"; columns].join(",") + "\n";
    for _ in 0..rows {
        file.push_str(&row);
    }
    file.into_bytes()
}

/// JSON 100 levels deep with 1 000-byte keys over 20 000 leaves: each leaf's line repeats the
/// 100 kB path.
pub fn json_bomb() -> Vec<u8> {
    let mut value = serde_json::Value::Array(vec![serde_json::json!(1); 20_000]);
    for level in 0..100 {
        let mut map = serde_json::Map::new();
        map.insert(format!("{level}{}", "k".repeat(1000)), value);
        value = serde_json::Value::Object(map);
    }
    serde_json::to_vec(&value).unwrap()
}

/// HTML nested `depth` elements deep.
pub fn nested_html(depth: usize) -> Vec<u8> {
    let mut html = String::from("<html><body><main>");
    for _ in 0..depth {
        html.push_str("<div><ul><li>deep");
    }
    html.push_str("</main></body></html>");
    html.into_bytes()
}

#[test]
fn the_zero_streams_inflate_to_what_they_claim() {
    use std::io::Read;
    for n in [1, 257, 258, 259, 100_000] {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(zlib_zeros(n).as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|&b| b == 0));
        let mut raw = Vec::new();
        flate2::read::DeflateDecoder::new(deflate_zeros(n).as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), n);
    }
}
