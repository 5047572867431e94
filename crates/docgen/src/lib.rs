//! The module reference has one source, `doc/push.md`. This crate renders it as the plain-text
//! README that Kamailio's modules ship (`/usr/share/doc/kamailio/modules/README.<module>.gz`), in
//! the same layout: the title, a table of contents with a list of examples, "Chapter 1. Admin
//! Guide" with its numbered sections ("3.4. timeout (integer)", "Default value is ...",
//! "Example 1.4. Set timeout parameter" followed by the example flush left between `...` lines),
//! and "Chapter 2. Frequently Asked Questions" with its numbered questions.
//!
//! Kamailio writes its module docs in DocBook and renders them with xsltproc, docbook-xsl and a
//! text browser. Here the Markdown reference stays the source (it is what the repository shows and
//! what `crates/core/tests/docs.rs` checks against the code's parameter and statistics tables),
//! and this renderer, plain Rust without dependencies, turns it into text at package build time,
//! so the package build needs nothing beyond cargo and the text cannot drift from the reference.
//!
//! The renderer knows the Markdown the reference uses, no more: `#`/`##`/`###` headings, the
//! hand-written "## Table of Contents" (skipped: the contents are rebuilt from the headings),
//! paragraphs, `-` and `1.` lists (nested by indentation), fenced and indented code, tables,
//! `**Example N. ...**` titles, and inline code, bold, italics and links.

use std::fmt::Write as _;

/// Lines of running text are wrapped to this width (Kamailio's READMEs use the same).
pub const WIDTH: usize = 75;
/// Indentation of running text under a section heading.
const BODY: usize = 3;

#[derive(Debug, Clone, PartialEq)]
enum Block {
    /// A paragraph, its lines joined with spaces (inline Markdown not yet removed).
    Para(String),
    List {
        ordered: bool,
        items: Vec<Vec<Block>>,
    },
    Code {
        lines: Vec<String>,
        fenced: bool,
    },
    /// Rows of cells, the header row first (the separator row dropped).
    Table(Vec<Vec<String>>),
    /// `**Example N. title**`: the title without its number.
    Example(String),
}

#[derive(Debug, Default)]
struct Section {
    number: String,
    title: String,
    blocks: Vec<Block>,
    subs: Vec<Section>,
}

#[derive(Debug, Default)]
struct Document {
    title: String,
    intro: Vec<Block>,
    sections: Vec<Section>,
    /// (question, answer) of the "Frequently Asked Questions" chapter.
    faq: Vec<(String, Vec<Block>)>,
}

/// Renders the reference as Kamailio's plain-text module README. Fails on a heading the layout
/// has no place for (a `##` heading that is neither numbered nor one of the known unnumbered
/// ones, a `###` heading outside a section), naming its line.
pub fn render(markdown: &str) -> Result<String, String> {
    let doc = parse(markdown)?;
    Ok(write_document(&doc))
}

// ---------------------------------------------------------------------------------------------
// Parsing

fn heading(line: &str) -> Option<(usize, &str)> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    if hashes == 0 || !line[hashes..].starts_with(' ') {
        return None;
    }
    Some((hashes, line[hashes..].trim()))
}

/// "3.4. timeout (int)" -> ("3.4", "timeout (int)").
fn numbered(title: &str) -> Option<(String, String)> {
    let (number, rest) = title.split_once(". ")?;
    if number.is_empty() || !number.split('.').all(|p| p.parse::<u32>().is_ok()) {
        return None;
    }
    Some((number.to_string(), rest.trim().to_string()))
}

fn parse(markdown: &str) -> Result<Document, String> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut doc = Document::default();
    // Where the lines of the current block group go.
    enum Target {
        Intro,
        Skip,
        Section,
        Sub,
        Faq,
    }
    let mut target = Target::Intro;
    let mut pending: Vec<&str> = Vec::new();
    let mut in_fence = false;
    let flush = |doc: &mut Document, target: &Target, pending: &mut Vec<&str>| {
        let blocks = parse_blocks(pending);
        pending.clear();
        match target {
            Target::Intro => doc.intro.extend(blocks),
            Target::Skip => {}
            Target::Section => doc.sections.last_mut().unwrap().blocks.extend(blocks),
            Target::Sub => {
                let section = doc.sections.last_mut().unwrap();
                section.subs.last_mut().unwrap().blocks.extend(blocks)
            }
            Target::Faq => doc.faq.last_mut().unwrap().1.extend(blocks),
        }
    };
    let mut in_faq = false;
    for (n, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let found = if in_fence { None } else { heading(line) };
        let Some((level, text)) = found else {
            if line.trim() == "---" && !in_fence {
                continue;
            }
            pending.push(line);
            continue;
        };
        flush(&mut doc, &target, &mut pending);
        let at = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        match level {
            1 => {
                doc.title = text.to_string();
                target = Target::Intro;
            }
            2 => {
                in_faq = false;
                if text == "Table of Contents" {
                    target = Target::Skip;
                } else if text == "Frequently Asked Questions" {
                    in_faq = true;
                    target = Target::Skip;
                } else {
                    let (number, title) =
                        numbered(text).ok_or_else(|| at("a section heading needs a number"))?;
                    doc.sections.push(Section {
                        number,
                        title,
                        ..Section::default()
                    });
                    target = Target::Section;
                }
            }
            3 if in_faq => {
                doc.faq.push((text.to_string(), Vec::new()));
                target = Target::Faq;
            }
            3 => {
                let section = doc
                    .sections
                    .last_mut()
                    .ok_or_else(|| at("a subsection outside a section"))?;
                let (number, title) =
                    numbered(text).ok_or_else(|| at("a subsection heading needs a number"))?;
                if !number.starts_with(&format!("{}.", section.number)) {
                    return Err(at(&format!(
                        "not numbered within section {}",
                        section.number
                    )));
                }
                section.subs.push(Section {
                    number,
                    title,
                    ..Section::default()
                });
                target = Target::Sub;
            }
            _ => return Err(at("headings deeper than ### have no place in the layout")),
        }
    }
    flush(&mut doc, &target, &mut pending);
    if doc.title.is_empty() {
        return Err("no title (# heading)".into());
    }
    Ok(doc)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A list marker at the start of `line` (no indentation): (ordered, marker width).
fn list_marker(line: &str) -> Option<(bool, usize)> {
    if line.starts_with("- ") {
        return Some((false, 2));
    }
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 && line[digits..].starts_with(". ") {
        return Some((true, digits + 2));
    }
    None
}

fn is_example(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix("**Example ")?.strip_suffix("**")?;
    let (number, title) = inner.split_once(". ")?;
    number.parse::<u32>().ok()?;
    Some(title.to_string())
}

fn table_cells(row: &str) -> Vec<String> {
    let row = row.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

/// The blocks of `lines`, whose indentation is relative to the block group (0 = its margin).
fn parse_blocks(lines: &[&str]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut i = 0;
    let mut after_blank = true;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() {
            after_blank = true;
            i += 1;
            continue;
        }
        let indent = indent_of(line);
        let body = &line[indent..];
        if body.starts_with("```") {
            let mut code = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                let l = lines[i];
                code.push(l.get(indent.min(indent_of(l))..).unwrap_or("").to_string());
                i += 1;
            }
            i += 1;
            blocks.push(Block::Code {
                lines: code,
                fenced: true,
            });
        } else if indent >= 4 && after_blank {
            let mut code = Vec::new();
            while i < lines.len() {
                let l = lines[i];
                if l.trim().is_empty() {
                    // A blank line inside the code when more code follows.
                    let more = lines[i..]
                        .iter()
                        .find(|l| !l.trim().is_empty())
                        .is_some_and(|l| indent_of(l) >= 4);
                    if !more {
                        break;
                    }
                    code.push(String::new());
                } else if indent_of(l) >= 4 {
                    code.push(l[4..].to_string());
                } else {
                    break;
                }
                i += 1;
            }
            blocks.push(Block::Code {
                lines: code,
                fenced: false,
            });
        } else if body.starts_with('|') {
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                let cells = table_cells(lines[i]);
                let separator = cells
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')));
                if !separator {
                    rows.push(cells);
                }
                i += 1;
            }
            blocks.push(Block::Table(rows));
        } else if let Some(title) = is_example(line) {
            blocks.push(Block::Example(title));
            i += 1;
        } else if let (0, Some((ordered, _))) = (indent, list_marker(body)) {
            let mut items = Vec::new();
            while i < lines.len() {
                let Some((_, width)) = list_marker(lines[i]).filter(|(o, _)| *o == ordered) else {
                    break;
                };
                let mut item: Vec<String> = vec![lines[i][width..].to_string()];
                i += 1;
                let mut prev_blank = false;
                while i < lines.len() {
                    let l = lines[i];
                    if l.trim().is_empty() {
                        prev_blank = true;
                        item.push(String::new());
                        i += 1;
                        continue;
                    }
                    let ind = indent_of(l);
                    if ind >= width {
                        item.push(l[width..].to_string());
                    } else if !prev_blank
                        && ind == 0
                        && list_marker(l).is_none()
                        && !l.starts_with('|')
                        && !l.starts_with("```")
                    {
                        // A lazy continuation of the item's paragraph.
                        item.push(l.to_string());
                    } else if ind > 0 && !prev_blank {
                        item.push(l.trim_start().to_string());
                    } else {
                        break;
                    }
                    prev_blank = false;
                    i += 1;
                }
                while item.last().is_some_and(|l| l.is_empty()) {
                    item.pop();
                }
                let refs: Vec<&str> = item.iter().map(String::as_str).collect();
                items.push(parse_blocks(&refs));
            }
            blocks.push(Block::List { ordered, items });
        } else {
            let mut text = body.trim().to_string();
            i += 1;
            while i < lines.len() {
                let l = lines[i];
                let b = l.trim_start();
                if l.trim().is_empty()
                    || b.starts_with("```")
                    || b.starts_with('|')
                    || (indent_of(l) == 0 && list_marker(l).is_some())
                    || is_example(l).is_some()
                {
                    break;
                }
                text.push(' ');
                text.push_str(b.trim_end());
                i += 1;
            }
            blocks.push(Block::Para(text));
        }
        after_blank = false;
    }
    blocks
}

// ---------------------------------------------------------------------------------------------
// Inline Markdown

/// Inline Markdown as plain text: code spans keep their text, without backticks, quoted “...”
/// when they hold a space (a log line, a command: where it starts and ends must show, as in
/// Kamailio's READMEs); bold and italic markers go; links become "text (url)".
fn inline(text: &str) -> String {
    let chars: Vec<char> = links(text).chars().collect();
    let mut out = String::new();
    let mut in_code = false;
    let mut quoted = false;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '`' => {
                if in_code && quoted {
                    out.push('”');
                }
                in_code = !in_code;
                i += 1;
                if in_code {
                    let end = chars[i..].iter().position(|&c| c == '`');
                    let span = &chars[i..i + end.unwrap_or(chars.len() - i)];
                    quoted = end.is_some() && span.iter().any(|c| c.is_whitespace());
                    if quoted {
                        out.push('“');
                    }
                }
            }
            '*' if !in_code => {
                // Emphasis: a run of `*` that touches text on one side only (a backtick counts
                // as text: `**`name`**`).
                let start = i;
                while i < chars.len() && chars[i] == '*' {
                    i += 1;
                }
                let space = |c: Option<&char>| c.is_none_or(|c| c.is_whitespace());
                if space(start.checked_sub(1).map(|j| &chars[j])) && space(chars.get(i)) {
                    out.extend(&chars[start..i]);
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Links: `[text](url)` -> `text (url)`, or just the text when both are the same.
fn links(text: &str) -> String {
    let mut linked = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else { break };
        let Some(end) = after[close + 2..].find(')') else {
            break;
        };
        let (label, url) = (&after[..close], &after[close + 2..close + 2 + end]);
        linked.push_str(&rest[..open]);
        if label == url {
            linked.push_str(label);
        } else {
            let _ = write!(linked, "{label} ({url})");
        }
        rest = &after[close + 2 + end + 1..];
    }
    linked.push_str(rest);
    linked
}

// ---------------------------------------------------------------------------------------------
// Writing

/// `text` wrapped to [`WIDTH`]: the first line starts with `first` (already indented), the others
/// are indented by `indent`.
fn wrap(out: &mut String, first: &str, indent: usize, text: &str) {
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

struct Writer {
    out: String,
    /// Examples so far: their titles, numbered 1.1, 1.2, ... in order.
    examples: Vec<String>,
}

impl Writer {
    fn blank(&mut self) {
        if !self.out.ends_with("\n\n") && !self.out.is_empty() {
            self.out.push('\n');
        }
    }

    fn blocks(&mut self, blocks: &[Block], indent: usize) {
        for (i, block) in blocks.iter().enumerate() {
            // Kamailio's READMEs put a list right under the sentence that introduces it.
            // and an example's code right under its title.
            let tight = i > 0
                && match block {
                    Block::List { .. } => matches!(blocks[i - 1], Block::Para(_)),
                    Block::Code { .. } => matches!(blocks[i - 1], Block::Example(_)),
                    _ => false,
                };
            if i > 0 && !tight {
                self.blank();
            }
            self.block(block, indent);
        }
    }

    fn block(&mut self, block: &Block, indent: usize) {
        let pad = " ".repeat(indent);
        match block {
            Block::Para(text) => wrap(&mut self.out, &pad, indent, &inline(text)),
            Block::List { ordered, items } => {
                for (n, item) in items.iter().enumerate() {
                    let marker = if *ordered {
                        format!("{}. ", n + 1)
                    } else {
                        "* ".to_string()
                    };
                    let inner = indent + 2 + marker.len();
                    let first = format!("{pad}  {marker}");
                    let mut rest = item.as_slice();
                    if let Some(Block::Para(text)) = item.first() {
                        wrap(&mut self.out, &first, inner, &inline(text));
                        rest = &item[1..];
                    } else {
                        self.out.push_str(first.trim_end());
                        self.out.push('\n');
                    }
                    for (k, block) in rest.iter().enumerate() {
                        let tight = matches!(block, Block::List { .. })
                            && (k > 0 && matches!(rest[k - 1], Block::Para(_))
                                || k == 0 && matches!(item.first(), Some(Block::Para(_))));
                        if !tight {
                            self.blank();
                        }
                        self.block(block, inner);
                    }
                    if matches!(item.last(), Some(Block::Code { .. })) && n + 1 < items.len() {
                        self.blank();
                    }
                }
            }
            Block::Code { lines, fenced } => {
                // Examples are flush left, as in Kamailio's READMEs; code inside running text
                // keeps the text's indentation.
                let code_pad = if *fenced && indent == BODY {
                    String::new()
                } else {
                    " ".repeat(indent + 2)
                };
                for line in lines {
                    if line.is_empty() {
                        self.out.push('\n');
                    } else {
                        let _ = writeln!(self.out, "{code_pad}{}", line.trim_end());
                    }
                }
            }
            Block::Table(rows) => self.table(rows, indent),
            Block::Example(title) => {
                self.examples.push(inline(title));
                let _ = writeln!(
                    self.out,
                    "{pad}Example 1.{}. {}",
                    self.examples.len(),
                    inline(title)
                );
            }
        }
    }

    /// A table as aligned columns when it fits the width, else one entry per row.
    fn table(&mut self, rows: &[Vec<String>], indent: usize) {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|c| inline(c)).collect())
            .collect();
        let Some(header) = rows.first() else { return };
        let columns = header.len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                rows.iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let pad = " ".repeat(indent);
        if indent + widths.iter().sum::<usize>() + 2 * (columns - 1) <= WIDTH {
            for (n, row) in rows.iter().enumerate() {
                let mut line = pad.clone();
                for (c, width) in widths.iter().enumerate() {
                    let cell = row.get(c).map_or("", String::as_str);
                    let _ = write!(line, "{cell:<width$}  ");
                }
                let _ = writeln!(self.out, "{}", line.trim_end());
                if n == 0 {
                    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                    let _ = writeln!(self.out, "{pad}{}", rule.join("  "));
                }
            }
            return;
        }
        for row in &rows[1..] {
            let first = format!("{pad}  * ");
            wrap(&mut self.out, &first, indent + 4, &row[0]);
            for (name, cell) in header.iter().zip(row).skip(1) {
                if cell.is_empty() {
                    continue;
                }
                let text = format!("{name}: {cell}");
                wrap(&mut self.out, &" ".repeat(indent + 4), indent + 6, &text);
            }
        }
    }
}

fn toc_line(out: &mut String, indent: usize, number: &str, title: &str) {
    let first = format!("{}{number}. ", " ".repeat(indent));
    let inner = indent + number.len() + 2 + 3;
    wrap(out, &first, inner, &inline(title));
}

fn param_title(section: &Section, sub: &Section) -> String {
    // Kamailio's READMEs spell the parameter types "integer" and "string".
    match sub.title.strip_suffix(" (int)") {
        Some(name) if section.number == "3" => format!("{name} (integer)"),
        _ => sub.title.clone(),
    }
}

/// The contents of chapter 1: each section, its subsections indented under it.
fn contents(out: &mut String, sections: &[Section], indent: usize, sub_indent: usize) {
    for section in sections {
        toc_line(out, indent, &section.number, &section.title);
        if !section.subs.is_empty() {
            out.push('\n');
            for sub in &section.subs {
                toc_line(out, sub_indent, &sub.number, &param_title(section, sub));
            }
            out.push('\n');
        }
    }
}

fn write_document(doc: &Document) -> String {
    // The examples are numbered while the body is written; the contents list them, so the body
    // is written first.
    let mut body = Writer {
        out: String::new(),
        examples: Vec::new(),
    };
    body.out
        .push_str("Chapter 1. Admin Guide\n\n   Table of Contents\n\n");
    contents(&mut body.out, &doc.sections, BODY, BODY + 5);
    for section in &doc.sections {
        body.blank();
        let _ = writeln!(body.out, "{}. {}", section.number, inline(&section.title));
        body.out.push('\n');
        if !section.subs.is_empty() {
            for sub in &section.subs {
                toc_line(&mut body.out, BODY, &sub.number, &param_title(section, sub));
            }
            body.out.push('\n');
        }
        body.blocks(&section.blocks, BODY);
        for sub in &section.subs {
            body.blank();
            let _ = writeln!(body.out, "{}. {}", sub.number, param_title(section, sub));
            body.out.push('\n');
            body.blocks(&sub.blocks, BODY);
        }
    }
    if !doc.faq.is_empty() {
        body.blank();
        body.out
            .push_str("Chapter 2. Frequently Asked Questions\n\n");
        for (n, (question, _)) in doc.faq.iter().enumerate() {
            toc_line(&mut body.out, BODY, &format!("2.{}", n + 1), question);
        }
        for (n, (question, answer)) in doc.faq.iter().enumerate() {
            body.blank();
            let _ = writeln!(body.out, "   2.{}.\n", n + 1);
            wrap(&mut body.out, "   ", BODY, &inline(question));
            body.out.push('\n');
            body.blocks(answer, BODY);
        }
    }

    let mut out = String::new();
    let _ = writeln!(out, "{}\n", inline(&doc.title));
    let mut head = Writer {
        out: String::new(),
        examples: Vec::new(),
    };
    head.blocks(&doc.intro, BODY);
    out.push_str(&head.out);
    let _ = writeln!(out, "     {}\n", "_".repeat(66));
    out.push_str("   Table of Contents\n\n   1. Admin Guide\n\n");
    contents(&mut out, &doc.sections, BODY + 5, BODY + 11);
    if !doc.faq.is_empty() {
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str("   2. Frequently Asked Questions\n");
    }
    if !body.examples.is_empty() {
        out.push_str("\n   List of Examples\n\n");
        for (n, title) in body.examples.iter().enumerate() {
            toc_line(&mut out, BODY, &format!("1.{}", n + 1), title);
        }
    }
    out.push('\n');
    out.push_str(body.out.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markdown_becomes_plain_text() {
        assert_eq!(inline("**Devices.** A `pn-prid`"), "Devices. A pn-prid");
        assert_eq!(
            inline("*Default value is `\"x\"`.*"),
            "Default value is \"x\"."
        );
        assert_eq!(inline("`Contact: *` and a * b"), "“Contact: *” and a * b");
        assert_eq!(
            inline("see [the RFC](https://x/8599)"),
            "see the RFC (https://x/8599)"
        );
        assert_eq!(inline("- **`push.cfg`** — x"), "- push.cfg — x");
        assert_eq!(inline("`INFO` `call x held` — y"), "INFO “call x held” — y");
    }

    #[test]
    fn lists_nest_and_keep_their_continuations() {
        let md = "Intro:\n\n- one\n  more\n  - inner\n- two\n\n1. first\n2. second\n";
        let lines: Vec<&str> = md.lines().collect();
        let blocks = parse_blocks(&lines);
        assert_eq!(blocks.len(), 3, "{blocks:?}");
        let Block::List {
            ordered: false,
            items,
        } = &blocks[1]
        else {
            panic!("{blocks:?}")
        };
        assert_eq!(items[0][0], Block::Para("one more".into()));
        assert!(matches!(items[0][1], Block::List { .. }));
        assert!(matches!(blocks[2], Block::List { ordered: true, .. }));
    }

    #[test]
    fn a_parameter_renders_as_in_kamailio() {
        let md = "# x Module\n\nIntro.\n\n## 3. Parameters\n\n### 3.1. timeout (int)\n\n\
                  Seconds.\n\n*Default value is 30.*\n\n**Example 1. Set `timeout` parameter**\n\n\
                  ```\n...\nmodparam(\"x\", \"timeout\", 30)\n...\n```\n";
        let text = render(md).unwrap();
        assert!(
            text.contains(
                "3.1. timeout (integer)\n\n   Seconds.\n\n   Default value is 30.\n\n   \
                 Example 1.1. Set timeout parameter\n...\nmodparam(\"x\", \"timeout\", 30)\n...\n"
            ),
            "{text}"
        );
        assert!(text.contains("   List of Examples\n\n   1.1. Set timeout parameter\n"));
    }

    #[test]
    fn an_unnumbered_section_is_refused() {
        let err = render("# x\n\n## Loose\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }
}
