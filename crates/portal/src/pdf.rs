//! PDF documents of a record (the whole record, one document): text laid out in pages
//! of A4 with headings, label–value facts, tables that break across pages with their
//! header repeated, and a footer "page N of M". Written by hand to PDF 1.7: the DejaVu
//! Sans Condensed fonts shipped in the binary (no system font is ever read) are embedded
//! as subsets holding only the glyphs used (Type0 / Identity-H, with a ToUnicode map so
//! the text can be searched and copied, Cyrillic included); streams are deflated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;

const REGULAR_TTF: &[u8] = include_bytes!("../assets/fonts/DejaVuSansCondensed.ttf");
const BOLD_TTF: &[u8] = include_bytes!("../assets/fonts/DejaVuSansCondensed-Bold.ttf");

/// A4 in points, and the margins.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 42.0;
const FOOTER: f32 = 28.0;

/// What a document is made of, in reading order.
#[derive(Debug, Clone)]
pub(crate) enum Block {
    /// The document's title (large, bold).
    Title(String),
    /// A section heading.
    Heading(String),
    /// A paragraph of running text (line breaks kept).
    Text(String),
    /// A small grey line (an empty list, a note).
    Note(String),
    /// Label–value pairs, two columns.
    Facts(Vec<(String, String)>),
    /// A table: column headings and rows of cells (a cell's `\n` starts a new line).
    Table { columns: Vec<String>, rows: Vec<Vec<String>> },
}

/// A document to write: its metadata, what each page's footer says, and the blocks.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub title: String,
    /// The footer's left part (e.g. "Medkarta · 3 December 2026"); "page N of M" is
    /// `page_of` with `{n}` and `{m}` filled in.
    pub footer: String,
    pub page_of: String,
    pub blocks: Vec<Block>,
}

/// One of the two embedded fonts, parsed once.
struct Font {
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    /// PostScript name (the subset's name is a tag and this).
    name: &'static str,
    scale: f32,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Style {
    Regular = 0,
    Bold = 1,
}

fn font(style: Style) -> &'static Font {
    static FONTS: OnceLock<[Font; 2]> = OnceLock::new();
    let fonts = FONTS.get_or_init(|| {
        #[allow(clippy::expect_used, reason = "the fonts are part of the binary; the unit tests parse them")]
        let load = |data: &'static [u8], name| {
            let face = ttf_parser::Face::parse(data, 0).expect("the embedded font parses");
            let scale = 1000.0 / f32::from(face.units_per_em());
            Font { data, face, name, scale }
        };
        [load(REGULAR_TTF, "DejaVuSansCondensed"), load(BOLD_TTF, "DejaVuSansCondensed-Bold")]
    });
    &fonts[style as usize]
}

impl Font {
    /// The glyph of a character ('?' for one the font lacks).
    fn glyph(&self, c: char) -> u16 {
        self.face.glyph_index(c).or_else(|| self.face.glyph_index('?')).map_or(0, |g| g.0)
    }

    /// A glyph's advance in thousandths of the font size.
    fn advance(&self, gid: u16) -> f32 {
        f32::from(self.face.glyph_hor_advance(ttf_parser::GlyphId(gid)).unwrap_or(0)) * self.scale
    }

    fn width(&self, s: &str, size: f32) -> f32 {
        s.chars().map(|c| self.advance(self.glyph(c))).sum::<f32>() * size / 1000.0
    }
}

/// Text split into lines no wider than `max` (words broken only when one alone is
/// wider); the text's own line breaks are kept.
fn wrap(s: &str, style: Style, size: f32, max: f32) -> Vec<String> {
    let f = font(style);
    let space = f.width(" ", size);
    let mut lines = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        let mut width = 0.0;
        for word in para.split_whitespace() {
            let w = f.width(word, size);
            if !line.is_empty() && width + space + w <= max {
                line.push(' ');
                line.push_str(word);
                width += space + w;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if w <= max {
                line.push_str(word);
                width = w;
                continue;
            }
            // a word wider than the line: as many characters as fit on each line
            width = 0.0;
            for c in word.chars() {
                let cw = f.width(c.encode_utf8(&mut [0; 4]), size);
                if width + cw > max && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    width = 0.0;
                }
                line.push(c);
                width += cw;
            }
        }
        lines.push(line);
    }
    lines
}

/// Pages being filled: each page's content stream, and the glyphs used per font.
struct Layout {
    pages: Vec<String>,
    /// The page drawn on (the last one, but for the footers).
    current: usize,
    y: f32,
    used: [BTreeMap<u16, char>; 2],
}

impl Layout {
    fn new() -> Layout {
        let mut l = Layout { pages: Vec::new(), current: 0, y: 0.0, used: [BTreeMap::new(), BTreeMap::new()] };
        l.new_page();
        l
    }

    fn new_page(&mut self) {
        self.pages.push(String::new());
        self.current = self.pages.len() - 1;
        self.y = PAGE_H - MARGIN;
    }

    /// Room for `h` more points on this page, else a new page.
    fn need(&mut self, h: f32) -> bool {
        if self.y - h < MARGIN + FOOTER {
            self.new_page();
            return true;
        }
        false
    }

    fn page(&mut self) -> &mut String {
        &mut self.pages[self.current]
    }

    /// Show `s` with its baseline at (x, y), in grey level `grey` (0 black).
    fn text(&mut self, s: &str, style: Style, size: f32, x: f32, y: f32, grey: f32) {
        if s.is_empty() {
            return;
        }
        let f = font(style);
        let mut hex = String::with_capacity(s.len() * 4);
        for c in s.chars().filter(|c| !c.is_control()) {
            let g = f.glyph(c);
            self.used[style as usize].entry(g).or_insert(c);
            let _ = write!(hex, "{g:04X}");
        }
        let _ = writeln!(self.page(), "BT {grey:.2} g /F{} {size:.1} Tf {x:.2} {y:.2} Td <{hex}> Tj ET", style as u8);
    }

    fn rule(&mut self, x: f32, y: f32, w: f32, grey: f32) {
        let _ = writeln!(self.page(), "{grey:.2} G 0.5 w {x:.2} {y:.2} m {:.2} {y:.2} l S", x + w);
    }

    fn fill(&mut self, x: f32, y: f32, w: f32, h: f32, grey: f32) {
        let _ = writeln!(self.page(), "{grey:.2} g {x:.2} {y:.2} {w:.2} {h:.2} re f");
    }

    /// Lines of one size, each on its own line, breaking pages as needed.
    fn lines(&mut self, lines: &[String], style: Style, size: f32, x: f32, grey: f32) {
        let lead = size * 1.3;
        for line in lines {
            self.need(lead);
            self.y -= lead;
            let y = self.y + size * 0.3;
            self.text(line, style, size, x, y, grey);
        }
    }

    fn block(&mut self, b: &Block) {
        let width = PAGE_W - 2.0 * MARGIN;
        match b {
            Block::Title(s) => {
                let lines = wrap(s, Style::Bold, 17.0, width);
                self.lines(&lines, Style::Bold, 17.0, MARGIN, 0.0);
                self.y -= 6.0;
            }
            Block::Heading(s) => {
                // a heading is not left alone at the foot of a page
                self.need(14.0 * 1.3 + 40.0);
                self.y -= 10.0;
                let lines = wrap(s, Style::Bold, 12.5, width);
                self.lines(&lines, Style::Bold, 12.5, MARGIN, 0.0);
                self.y -= 3.0;
            }
            Block::Text(s) => {
                let lines = wrap(s, Style::Regular, 10.0, width);
                self.lines(&lines, Style::Regular, 10.0, MARGIN, 0.0);
                self.y -= 4.0;
            }
            Block::Note(s) => {
                let lines = wrap(s, Style::Regular, 9.0, width);
                self.lines(&lines, Style::Regular, 9.0, MARGIN, 0.35);
            }
            Block::Facts(facts) => {
                let label_w =
                    facts.iter().map(|(k, _)| font(Style::Regular).width(k, 10.0)).fold(0.0, f32::max).min(width * 0.4)
                        + 12.0;
                for (k, v) in facts {
                    let keys = wrap(k, Style::Regular, 10.0, label_w - 12.0);
                    let values = wrap(v, Style::Bold, 10.0, width - label_w);
                    let n = keys.len().max(values.len());
                    let lead = 13.0;
                    self.need(lead * n as f32);
                    let top = self.y;
                    for (i, line) in keys.iter().enumerate() {
                        self.text(line, Style::Regular, 10.0, MARGIN, top - lead * (i as f32 + 1.0) + 3.0, 0.35);
                    }
                    for (i, line) in values.iter().enumerate() {
                        self.text(line, Style::Bold, 10.0, MARGIN + label_w, top - lead * (i as f32 + 1.0) + 3.0, 0.0);
                    }
                    self.y = top - lead * n as f32;
                }
                self.y -= 4.0;
            }
            Block::Table { columns, rows } => self.table(columns, rows, width),
        }
    }

    /// A table as wide as the page: columns share the width by what they hold; a row is
    /// never split, the header is repeated on each page the table continues on.
    fn table(&mut self, columns: &[String], rows: &[Vec<String>], width: f32) {
        const SIZE: f32 = 8.5;
        const LEAD: f32 = SIZE * 1.25;
        const PAD: f32 = 3.0;
        let n = columns.len().max(1);
        let regular = font(Style::Regular);
        // what each column would like: its longest line, up to a share of the page
        let mut want: Vec<f32> = columns.iter().map(|c| font(Style::Bold).width(c, SIZE).min(width / 3.0)).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                for line in cell.split('\n') {
                    want[i] = want[i].max(regular.width(line, SIZE).min(width * 0.45));
                }
            }
        }
        let total: f32 = want.iter().map(|w| w + 2.0 * PAD).sum();
        let widths: Vec<f32> = if total <= width {
            want.iter().map(|w| w + 2.0 * PAD + (width - total) / n as f32).collect()
        } else {
            // narrow columns keep what they need, the wide ones share the rest
            let fair = width / n as f32;
            let small: f32 = want.iter().map(|w| w + 2.0 * PAD).filter(|w| *w <= fair).sum();
            let big: f32 = want.iter().map(|w| w + 2.0 * PAD).filter(|w| *w > fair).sum();
            want.iter().map(|w| w + 2.0 * PAD).map(|w| if w <= fair { w } else { w / big * (width - small) }).collect()
        };
        let header: Vec<Vec<String>> =
            columns.iter().zip(&widths).map(|(c, w)| wrap(c, Style::Bold, SIZE, w - 2.0 * PAD)).collect();
        let header_h = header.iter().map(Vec::len).max().unwrap_or(1) as f32 * LEAD + 2.0 * PAD;
        // a row's cells, each its lines, from the top of the row down
        let draw_row = |l: &mut Layout, cells: &[Vec<String>], style: Style| {
            let mut x = MARGIN;
            for (lines, w) in cells.iter().zip(&widths) {
                for (j, line) in lines.iter().enumerate() {
                    l.text(line, style, SIZE, x + PAD, l.y - PAD - LEAD * (j as f32 + 1.0) + 2.5, 0.0);
                }
                x += w;
            }
        };
        let draw_header = |l: &mut Layout| {
            l.fill(MARGIN, l.y - header_h, width, header_h, 0.9);
            draw_row(l, &header, Style::Bold);
            l.y -= header_h;
        };
        self.need(header_h + LEAD + 2.0 * PAD);
        draw_header(self);
        for row in rows {
            let cells: Vec<Vec<String>> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| wrap(row.get(i).map_or("", String::as_str), Style::Regular, SIZE, w - 2.0 * PAD))
                .collect();
            let h = cells.iter().map(Vec::len).max().unwrap_or(1) as f32 * LEAD + 2.0 * PAD;
            if self.need(h) {
                draw_header(self);
            }
            draw_row(self, &cells, Style::Regular);
            self.y -= h;
            self.rule(MARGIN, self.y, width, 0.75);
        }
        self.y -= 6.0;
    }
}

/// The document as PDF bytes.
pub(crate) fn render(doc: &Document) -> Vec<u8> {
    let mut l = Layout::new();
    for b in &doc.blocks {
        l.block(b);
    }
    let m = l.pages.len();
    for n in 1..=m {
        l.current = n - 1;
        let page_of = doc.page_of.replace("{n}", &n.to_string()).replace("{m}", &m.to_string());
        let w = font(Style::Regular).width(&page_of, 8.0);
        l.rule(MARGIN, MARGIN + 12.0, PAGE_W - 2.0 * MARGIN, 0.6);
        l.text(&doc.footer, Style::Regular, 8.0, MARGIN, MARGIN, 0.35);
        l.text(&page_of, Style::Regular, 8.0, PAGE_W - MARGIN - w, MARGIN, 0.35);
    }
    write(doc, &l)
}

/// Objects of a PDF file, written in order with their offsets for the cross-reference.
struct Pdf {
    out: Vec<u8>,
    offsets: Vec<usize>,
}

impl Pdf {
    /// Reserve the next object number.
    fn reserve(&mut self) -> usize {
        self.offsets.push(0);
        self.offsets.len()
    }

    fn object(&mut self, id: usize, body: &str) {
        self.offsets[id - 1] = self.out.len();
        let _ = write!(self.out, "{id} 0 obj\n{body}\nendobj\n");
    }

    /// A stream object, deflated; `dict` holds the entries besides the length.
    fn stream(&mut self, id: usize, dict: &str, data: &[u8]) {
        let packed = deflate(data);
        self.offsets[id - 1] = self.out.len();
        let _ = write!(self.out, "{id} 0 obj\n<< {dict} /Filter /FlateDecode /Length {} >>\nstream\n", packed.len());
        self.out.extend_from_slice(&packed);
        self.out.extend_from_slice(b"\nendstream\nendobj\n");
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = z.write_all(data);
    z.finish().unwrap_or_default()
}

/// A text string of the document's metadata: UTF-16BE with its byte-order mark.
fn text_string(s: &str) -> String {
    let mut hex = String::from("<FEFF");
    for u in s.encode_utf16() {
        let _ = write!(hex, "{u:04X}");
    }
    hex.push('>');
    hex
}

fn write(doc: &Document, l: &Layout) -> Vec<u8> {
    let mut pdf = Pdf { out: b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec(), offsets: Vec::new() };
    let catalog = pdf.reserve();
    let pages = pdf.reserve();
    let info = pdf.reserve();
    let fonts: Vec<usize> = [Style::Regular, Style::Bold]
        .iter()
        .map(|&style| embed_font(&mut pdf, font(style), &l.used[style as usize]))
        .collect();
    let mut kids = Vec::new();
    for content in &l.pages {
        let page = pdf.reserve();
        let stream = pdf.reserve();
        pdf.stream(stream, "", content.as_bytes());
        pdf.object(
            page,
            &format!(
                "<< /Type /Page /Parent {pages} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] /Contents {stream} 0 R \
                 /Resources << /Font << /F0 {} 0 R /F1 {} 0 R >> >> >>",
                fonts[0], fonts[1]
            ),
        );
        kids.push(format!("{page} 0 R"));
    }
    pdf.object(pages, &format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), kids.len()));
    pdf.object(catalog, &format!("<< /Type /Catalog /Pages {pages} 0 R >>"));
    let now = jiff::Timestamp::now().strftime("%Y%m%d%H%M%SZ");
    pdf.object(
        info,
        &format!(
            "<< /Title {} /Producer (Medkarta) /Creator (Medkarta) /CreationDate (D:{now}) >>",
            text_string(&doc.title)
        ),
    );
    let xref = pdf.out.len();
    let _ = write!(pdf.out, "xref\n0 {}\n0000000000 65535 f \n", pdf.offsets.len() + 1);
    for o in &pdf.offsets {
        let _ = writeln!(pdf.out, "{o:010} 00000 n ");
    }
    let _ = write!(
        pdf.out,
        "trailer\n<< /Size {} /Root {catalog} 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        pdf.offsets.len() + 1
    );
    pdf.out
}

/// Embed a font as a subset of the glyphs used: the Type0 font (returned), its CID
/// font, descriptor, font file and ToUnicode map.
fn embed_font(pdf: &mut Pdf, f: &Font, used: &BTreeMap<u16, char>) -> usize {
    let (type0, cid, descriptor, file, to_unicode) =
        (pdf.reserve(), pdf.reserve(), pdf.reserve(), pdf.reserve(), pdf.reserve());
    let glyphs: BTreeSet<u16> = used.keys().copied().collect();
    // the subset's tag: six capitals derived from the glyphs it holds
    let mut h: u32 = 2_166_136_261;
    for g in &glyphs {
        h = (h ^ u32::from(*g)).wrapping_mul(16_777_619);
    }
    let tag: String = (0..6).map(|i| char::from(b'A' + ((h >> (i * 5)) % 26) as u8)).collect();
    let name = format!("{tag}+{}", f.name);
    let sub = subset(f.data, &glyphs).unwrap_or_else(|| f.data.to_vec());
    pdf.stream(file, &format!("/Length1 {}", sub.len()), &sub);
    let bbox = f.face.global_bounding_box();
    let s = |v: i16| (f32::from(v) * f.scale).round();
    pdf.object(
        descriptor,
        &format!(
            "<< /Type /FontDescriptor /FontName /{name} /Flags 32 /FontBBox [{} {} {} {}] /ItalicAngle 0 \
             /Ascent {} /Descent {} /CapHeight {} /StemV 80 /FontFile2 {file} 0 R >>",
            s(bbox.x_min),
            s(bbox.y_min),
            s(bbox.x_max),
            s(bbox.y_max),
            s(f.face.ascender()),
            s(f.face.descender()),
            s(f.face.capital_height().unwrap_or(f.face.ascender())),
        ),
    );
    let widths: Vec<String> = glyphs.iter().map(|g| format!("{g} [{}]", f.advance(*g).round())).collect();
    pdf.object(
        cid,
        &format!(
            "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} \
             /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
             /FontDescriptor {descriptor} 0 R /CIDToGIDMap /Identity /DW 500 /W [{}] >>",
            widths.join(" ")
        ),
    );
    pdf.stream(to_unicode, "", to_unicode_cmap(used).as_bytes());
    pdf.object(
        type0,
        &format!(
            "<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H \
             /DescendantFonts [{cid} 0 R] /ToUnicode {to_unicode} 0 R >>"
        ),
    );
    type0
}

/// The map from glyphs back to text (search, copy, `pdftotext`).
fn to_unicode_cmap(used: &BTreeMap<u16, char>) -> String {
    let mut s = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
         /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
         1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    let pairs: Vec<(&u16, &char)> = used.iter().collect();
    for chunk in pairs.chunks(100) {
        let _ = writeln!(s, "{} beginbfchar", chunk.len());
        for (g, c) in chunk {
            let mut units = [0u16; 2];
            let hex: String = c.encode_utf16(&mut units).iter().map(|u| format!("{u:04X}")).collect();
            let _ = writeln!(s, "<{g:04X}> <{hex}>");
        }
        s.push_str("endbfchar\n");
    }
    s.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    s
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        sum.wrapping_add(u32::from_be_bytes(w))
    })
}

/// A TrueType font holding only the outlines of `glyphs` (and of the glyphs their
/// composites are made of, and glyph 0): the others are left empty, so glyph ids stay
/// as they are. Only the tables a PDF reader uses are kept. `None` if the font is not
/// what this expects (the whole font is embedded then).
fn subset(font: &[u8], glyphs: &BTreeSet<u16>) -> Option<Vec<u8>> {
    let count = usize::from(be16(font, 4)?);
    let mut tables = BTreeMap::new();
    for i in 0..count {
        let rec = 12 + 16 * i;
        let tag = font.get(rec..rec + 4)?;
        let (off, len) = (be32(font, rec + 8)? as usize, be32(font, rec + 12)? as usize);
        tables.insert(<[u8; 4]>::try_from(tag).ok()?, font.get(off..off + len)?);
    }
    let head = *tables.get(b"head")?;
    let long_loca = be16(head, 50)? == 1;
    let glyph_count = usize::from(be16(tables.get(b"maxp")?, 4)?);
    let (loca, glyf) = (*tables.get(b"loca")?, *tables.get(b"glyf")?);
    let at = |g: usize| -> Option<usize> {
        if long_loca { be32(loca, 4 * g).map(|o| o as usize) } else { be16(loca, 2 * g).map(|o| 2 * usize::from(o)) }
    };
    let outline = |g: usize| -> Option<&[u8]> { glyf.get(at(g)?..at(g + 1)?) };
    // the glyphs kept: those asked for, .notdef, and the parts of composites
    let mut keep: BTreeSet<usize> = glyphs.iter().map(|g| usize::from(*g)).filter(|g| *g < glyph_count).collect();
    keep.insert(0);
    let mut todo: Vec<usize> = keep.iter().copied().collect();
    while let Some(g) = todo.pop() {
        let data = outline(g)?;
        if data.len() < 10 || (be16(data, 0)? as i16) >= 0 {
            continue;
        }
        let mut p = 10;
        loop {
            let (flags, part) = (be16(data, p)?, usize::from(be16(data, p + 2)?));
            if part < glyph_count && keep.insert(part) {
                todo.push(part);
            }
            p += 4 + if flags & 0x1 != 0 { 4 } else { 2 };
            p += if flags & 0x8 != 0 {
                2
            } else if flags & 0x40 != 0 {
                4
            } else if flags & 0x80 != 0 {
                8
            } else {
                0
            };
            if flags & 0x20 == 0 {
                break;
            }
        }
    }
    let mut new_glyf = Vec::new();
    let mut new_loca = Vec::with_capacity(4 * (glyph_count + 1));
    for g in 0..glyph_count {
        new_loca.extend_from_slice(&(new_glyf.len() as u32).to_be_bytes());
        if keep.contains(&g) {
            new_glyf.extend_from_slice(outline(g)?);
            while new_glyf.len() % 4 != 0 {
                new_glyf.push(0);
            }
        }
    }
    new_loca.extend_from_slice(&(new_glyf.len() as u32).to_be_bytes());
    let mut new_head = head.to_vec();
    new_head.get_mut(8..12)?.copy_from_slice(&[0; 4]);
    new_head.get_mut(50..52)?.copy_from_slice(&1u16.to_be_bytes());
    let mut out_tables: Vec<([u8; 4], Vec<u8>)> = Vec::new();
    for tag in [b"cvt ", b"fpgm", b"glyf", b"head", b"hhea", b"hmtx", b"loca", b"maxp", b"prep"] {
        let data = match tag {
            b"glyf" => std::mem::take(&mut new_glyf),
            b"loca" => std::mem::take(&mut new_loca),
            b"head" => std::mem::take(&mut new_head),
            _ => match tables.get(tag) {
                Some(d) => d.to_vec(),
                None => continue,
            },
        };
        out_tables.push((*tag, data));
    }
    // the table directory, then the tables (each on a 4-byte boundary)
    let n = out_tables.len() as u16;
    let pow = 1u16 << (15 - n.leading_zeros());
    let mut out = Vec::new();
    out.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    for v in [n, pow * 16, pow.trailing_zeros() as u16, n * 16 - pow * 16] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    let mut offset = 12 + 16 * out_tables.len();
    let mut head_at = 0;
    for (tag, data) in &out_tables {
        if tag == b"head" {
            head_at = offset;
        }
        out.extend_from_slice(tag);
        out.extend_from_slice(&checksum(data).to_be_bytes());
        out.extend_from_slice(&(offset as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        offset += data.len().div_ceil(4) * 4;
    }
    for (_, data) in &out_tables {
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    let adjust = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out));
    out.get_mut(head_at + 8..head_at + 12)?.copy_from_slice(&adjust.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rows: usize) -> Document {
        let row = |i: usize| {
            vec![
                format!("Глюкоза {i}"),
                "5.6 ммоль/л".to_string(),
                "3.9–6.1".to_string(),
                "1 декабря 2026\nранее 5.1".to_string(),
            ]
        };
        Document {
            title: "Иванова Анна Сергеевна".into(),
            footer: "Медкарта · 3 декабря 2026".into(),
            page_of: "стр. {n} из {m}".into(),
            blocks: vec![
                Block::Title("Иванова Анна Сергеевна".into()),
                Block::Facts(vec![
                    ("Дата рождения".into(), "1 марта 1980".into()),
                    ("СНИЛС".into(), "112-233-445 95".into()),
                ]),
                Block::Heading("Результаты анализов".into()),
                Block::Table {
                    columns: vec!["Анализ".into(), "Значение".into(), "Норма".into(), "Дата".into()],
                    rows: (0..rows).map(row).collect(),
                },
                Block::Note("Нет записей".into()),
                Block::Text("Жалобы: нет. Ёлка, щука, съезд — все буквы.".into()),
            ],
        }
    }

    #[test]
    fn a_document_is_a_pdf_with_its_pages_and_a_subset_font() {
        let pdf = render(&sample(150));
        // to look at it: MEDKARTA_PDF_SAMPLE=/tmp/sample.pdf cargo nextest run -p portal pdf
        if let Ok(path) = std::env::var("MEDKARTA_PDF_SAMPLE") {
            std::fs::write(path, &pdf).unwrap();
        }
        let text = String::from_utf8_lossy(&pdf);
        assert!(pdf.starts_with(b"%PDF-1.7"));
        assert!(text.trim_end().ends_with("%%EOF"));
        // 150 rows of two lines do not fit one page: the table goes on, header repeated
        let count: usize = text
            .split("/Type /Pages /Kids [")
            .nth(1)
            .and_then(|s| s.split("/Count ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!((4..=8).contains(&count), "{count} pages");
        assert!(text.contains("/FontFile2") && text.contains("/ToUnicode") && text.contains("/Identity-H"));
        // both fonts embedded as subsets: far smaller than the fonts themselves
        assert!(pdf.len() < 120_000, "{} bytes", pdf.len());
    }

    #[test]
    fn a_subset_keeps_the_glyphs_used_and_their_parts() {
        let f = font(Style::Regular);
        let used: BTreeSet<u16> = "Ёлка Й".chars().map(|c| f.glyph(c)).collect();
        let sub = subset(f.data, &used).unwrap();
        assert!(sub.len() < f.data.len() / 4, "{} of {}", sub.len(), f.data.len());
        let face = ttf_parser::Face::parse(&sub, 0).unwrap();
        assert_eq!(face.number_of_glyphs(), f.face.number_of_glyphs());
        for g in &used {
            let id = ttf_parser::GlyphId(*g);
            assert_eq!(face.glyph_bounding_box(id), f.face.glyph_bounding_box(id), "glyph {g}");
        }
        // a glyph not used is empty in the subset
        let unused = f.glyph('Ж');
        assert!(face.glyph_bounding_box(ttf_parser::GlyphId(unused)).is_none());
        // the whole file's checksum is the magic number
        assert_eq!(checksum(&sub), 0xB1B0_AFBA);
    }

    #[test]
    fn long_words_and_lines_wrap_within_the_width() {
        let lines = wrap("Коротко. Оченьоченьоченьоченьоченьдлинноеслово и ещё", Style::Regular, 10.0, 60.0);
        assert!(lines.len() > 3, "{lines:?}");
        for l in &lines {
            assert!(font(Style::Regular).width(l, 10.0) <= 60.0 + 0.01, "{l}");
        }
        assert_eq!(wrap("a\nb", Style::Regular, 10.0, 100.0), vec!["a", "b"]);
    }
}
