//! The documentation lists exactly the module parameters and statistics the code declares
//! (`push_core::config::PARAMS`, `push_core::shared::STATISTICS`): README.md's parameter and
//! statistics tables, and doc/push.md's parameter sections (with its table of contents) and
//! statistics list. A parameter or statistic added to the code without its documentation, or
//! documented and gone from the code, fails here with its name.
//!
//! The same holds for the plain-text README the package installs as
//! `/usr/share/doc/kamailio/modules/README.push.gz`: it is rendered from doc/push.md at package
//! build time (`push-docgen`), and these tests render it the same way and check its parameter
//! sections ("3.N. name (integer)", "Default value is ...", "Example 1.N. Set name parameter"),
//! its statistics, and that no heading of the reference is lost on the way.

use push_core::config::{DefaultValue, Kind, Param, PARAMS};
use push_core::shared::{StatKind, STATISTICS};
use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines after the heading line `heading` up to the next heading of the same or a higher
/// level (a `#` line inside a ``` block is no heading).
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.len() - heading.trim_start_matches('#').len();
    let mut lines = text.lines().skip_while(|l| l.trim_end() != heading);
    assert!(lines.next().is_some(), "no heading {heading:?}");
    let mut in_code = false;
    lines
        .take_while(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            let hashes = l.len() - l.trim_start_matches('#').len();
            in_code || !(hashes > 0 && hashes <= level && l[hashes..].starts_with(' '))
        })
        .collect()
}

/// The cells of the first Markdown table in `lines`, without its header and separator rows.
fn first_table(lines: &[&str]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    rows.into_iter().skip(2).collect()
}

/// The `code` spans of a text, in order.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// What differs between the names a document lists and the names the code declares.
fn compare(what: &str, documented: &[String], declared: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for name in declared {
        match documented.iter().filter(|d| d == name).count() {
            0 => problems.push(format!(
                "{what}: `{name}` is in the code but not documented"
            )),
            1 => {}
            n => problems.push(format!("{what}: `{name}` is documented {n} times")),
        }
    }
    for name in documented {
        if !declared.contains(&name.as_str()) {
            problems.push(format!(
                "{what}: `{name}` is documented but not in the code"
            ));
        }
    }
    problems
}

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "int",
        Kind::Str => "string",
    }
}

/// How a default reads in the docs: `30`, `PUSH_RESUME`; `None` for "none"/"unset".
fn default_text(default: DefaultValue) -> Option<String> {
    match default {
        DefaultValue::None => None,
        DefaultValue::Int(i) => Some(i.to_string()),
        DefaultValue::Str(s) => Some(s.to_string()),
    }
}

/// README.md, "## Parameters": the first table, one row per parameter (name, type, default,
/// meaning). The type says `string` or `int`, and `repeatable` for parameters that are.
fn readme_parameter_problems(readme: &str, params: &[Param]) -> Vec<String> {
    let what = "README.md parameter table";
    let rows = first_table(&section(readme, "## Parameters"));
    let documented: Vec<String> = rows.iter().flat_map(|row| backticked(&row[0])).collect();
    let names: Vec<&str> = params.iter().map(|p| p.name).collect();
    let mut problems = compare(what, &documented, &names);
    for param in params {
        let Some(row) = rows.iter().find(|r| backticked(&r[0]) == [param.name]) else {
            continue;
        };
        let (kind, default) = (&row[1], &row[2]);
        if !kind.starts_with(kind_word(param.kind)) {
            problems.push(format!(
                "{what}: `{}` has type {kind:?}, the code says {}",
                param.name,
                kind_word(param.kind)
            ));
        }
        if kind.contains("repeatable") != param.repeatable {
            problems.push(format!(
                "{what}: `{}`: the type {kind:?} should say \"repeatable\" exactly when the parameter is",
                param.name
            ));
        }
        let documented_default = match default_text(param.default) {
            Some(text) => default.contains(&text),
            None => default == "none",
        };
        if !documented_default {
            problems.push(format!(
                "{what}: `{}` has default {default:?}, the code says {:?}",
                param.name, param.default
            ));
        }
    }
    problems
}

/// doc/push.md: the table of contents lists `   - 3.N. name (type)` and "## 3. Parameters" has a
/// `### 3.N. name (type)` section per parameter, numbered in order, whose `*Default value is ...`
/// line gives the default.
fn reference_parameter_problems(doc: &str, params: &[Param]) -> Vec<String> {
    let names: Vec<&str> = params.iter().map(|p| p.name).collect();
    let mut problems = Vec::new();
    let contents = section(doc, "## Table of Contents");
    let parameters = section(doc, "## 3. Parameters");
    for (what, prefix, lines) in [
        ("doc/push.md table of contents", "   - 3.", &contents),
        ("doc/push.md section 3", "### 3.", &parameters),
    ] {
        // (number, name, type) of each entry.
        let entries: Vec<(String, String, String)> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| {
                let (number, rest) = l.split_once(". ").unwrap_or((l, ""));
                let (name, kind) = rest.split_once(" (").unwrap_or((rest, ""));
                (
                    number.to_string(),
                    name.to_string(),
                    kind.trim_end_matches(')').to_string(),
                )
            })
            .collect();
        for (i, (number, name, _)) in entries.iter().enumerate() {
            if *number != (i + 1).to_string() {
                problems.push(format!(
                    "{what}: `{name}` is numbered 3.{number}, expected 3.{}",
                    i + 1
                ));
            }
        }
        let documented: Vec<String> = entries.iter().map(|(_, n, _)| n.clone()).collect();
        problems.extend(compare(what, &documented, &names));
        for param in params {
            if let Some((_, _, kind)) = entries.iter().find(|(_, n, _)| n == param.name) {
                if kind != kind_word(param.kind) {
                    problems.push(format!(
                        "{what}: `{}` is marked ({kind}), the code says {}",
                        param.name,
                        kind_word(param.kind)
                    ));
                }
            }
        }
    }
    for param in params {
        let heading = parameters
            .iter()
            .find(|l| l.starts_with("### 3.") && l.contains(&format!(". {} (", param.name)));
        let Some(heading) = heading else { continue };
        let body = section(doc, heading);
        let line = body.iter().find(|l| {
            l.starts_with("*Default value is") || l.starts_with("*No ") && l.contains("by default")
        });
        let ok = match (line, default_text(param.default)) {
            (None, _) => false,
            (Some(line), Some(text)) => {
                line.starts_with(&format!("*Default value is {text}"))
                    || line.starts_with(&format!("*Default value is `\"{text}\"`"))
            }
            (Some(line), None) => !line.starts_with("*Default value is") || line.contains("unset"),
        };
        if !ok {
            problems.push(format!(
                "doc/push.md section {heading:?}: its \"*Default value is\" line does not give {:?}",
                param.default
            ));
        }
    }
    problems
}

fn kind_name(kind: StatKind) -> &'static str {
    match kind {
        StatKind::Counter => "counter",
        StatKind::Gauge => "gauge",
        StatKind::Derived => "derived",
    }
}

/// README.md, "## Statistics": the first table (statistic(s), kind, meaning).
fn readme_statistics_problems(readme: &str, names: &[&str]) -> Vec<String> {
    let what = "README.md statistics table";
    let rows = first_table(&section(readme, "## Statistics"));
    let documented: Vec<String> = rows.iter().flat_map(|r| backticked(&r[0])).collect();
    let mut problems = compare(what, &documented, names);
    for statistic in STATISTICS {
        let row = rows
            .iter()
            .find(|r| backticked(&r[0]).iter().any(|n| n == statistic.name));
        if let Some(row) = row {
            if row[1] != kind_name(statistic.kind) {
                problems.push(format!(
                    "{what}: `{}` is a {}, the code says {}",
                    statistic.name,
                    row[1],
                    kind_name(statistic.kind)
                ));
            }
        }
    }
    problems
}

/// doc/push.md, "## 7. Statistics": a list item per statistic (or per group of them), the names in
/// backticks before the dash: "- `name` — meaning".
fn reference_statistics_problems(doc: &str, names: &[&str]) -> Vec<String> {
    let documented: Vec<String> = section(doc, "## 7. Statistics")
        .iter()
        .filter_map(|l| l.strip_prefix("- "))
        .flat_map(|l| backticked(l.split(" — ").next().unwrap_or("")))
        .collect();
    compare("doc/push.md statistics list", &documented, names)
}

/// The lines of the rendered README's chapter-1 section `number` ("3"): from its heading line
/// ("3. Parameters") to the next section's or chapter's heading.
fn text_section<'a>(text: &'a str, number: &str) -> Vec<&'a str> {
    let heading = format!("{number}. ");
    let is_section = |l: &str| {
        l.starts_with("Chapter ")
            || l.split_once(". ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
    };
    let mut lines = text
        .lines()
        .skip_while(|l| !(l.starts_with(&heading) && is_section(l)));
    assert!(lines.next().is_some(), "no section {heading:?}");
    lines.take_while(|l| !is_section(l)).collect()
}

fn text_kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "integer",
        Kind::Str => "string",
    }
}

/// The rendered README, section 3: a heading `3.N. name (integer|string)` per parameter, numbered
/// in order, each followed by its "Default value is ..." line (or none, for a parameter without a
/// default) and its "Example 1.K. Set name parameter".
fn text_parameter_problems(text: &str, params: &[Param]) -> Vec<String> {
    let what = "README.push (rendered from doc/push.md), section 3";
    let section = text_section(text, "3");
    // (line index, number, name, type) of each parameter heading (flush left).
    let headings: Vec<(usize, String, String, String)> = section
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let rest = l.strip_prefix("3.")?;
            let (number, rest) = rest.split_once(". ")?;
            let (name, kind) = rest.split_once(" (")?;
            Some((
                i,
                number.to_string(),
                name.to_string(),
                kind.trim_end_matches(')').to_string(),
            ))
        })
        .collect();
    let documented: Vec<String> = headings.iter().map(|h| h.2.clone()).collect();
    let names: Vec<&str> = params.iter().map(|p| p.name).collect();
    let mut problems = compare(what, &documented, &names);
    for (n, (i, number, name, kind)) in headings.iter().enumerate() {
        if *number != (n + 1).to_string() {
            problems.push(format!(
                "{what}: `{name}` is numbered 3.{number}, expected 3.{}",
                n + 1
            ));
        }
        let Some(param) = params.iter().find(|p| p.name == name) else {
            continue;
        };
        if kind != text_kind(param.kind) {
            problems.push(format!(
                "{what}: `{name}` is marked ({kind}), the code says {}",
                text_kind(param.kind)
            ));
        }
        let end = headings.get(n + 1).map_or(section.len(), |h| h.0);
        let body = &section[*i..end];
        let default = body
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with("Default value is"));
        let ok = match (default, default_text(param.default)) {
            (Some(line), Some(text)) => {
                line.starts_with(&format!("Default value is {text}"))
                    || line.starts_with(&format!("Default value is \"{text}\""))
            }
            (Some(line), None) => line.contains("unset"),
            (None, None) => true,
            (None, Some(_)) => false,
        };
        if !ok {
            problems.push(format!(
                "{what}: `{name}`: its \"Default value is\" line {default:?} does not give {:?}",
                param.default
            ));
        }
        let example = format!("Set {name} parameter");
        if !body
            .iter()
            .any(|l| l.trim().starts_with("Example 1.") && l.trim().ends_with(&example))
        {
            problems.push(format!(
                "{what}: `{name}` has no \"Example 1.N. {example}\""
            ));
        }
    }
    problems
}

/// The rendered README, section 7: a list item per statistic (or group), the names before the
/// dash: "* name — meaning".
fn text_statistics_problems(text: &str, names: &[&str]) -> Vec<String> {
    // Section 7's own list, before its subsection 7.1 (the Prometheus metrics).
    let documented: Vec<String> = text_section(text, "7")
        .iter()
        .take_while(|l| !l.starts_with("7.1. "))
        .filter_map(|l| l.trim_start().strip_prefix("* "))
        .flat_map(|l| {
            l.split(" — ")
                .next()
                .unwrap_or("")
                .split([',', ' '])
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    compare(
        "README.push (rendered from doc/push.md), section 7",
        &documented,
        names,
    )
}

fn rendered_readme() -> String {
    push_docgen::render(&read("doc/push.md")).unwrap_or_else(|e| panic!("doc/push.md: {e}"))
}

fn statistic_names() -> Vec<&'static str> {
    STATISTICS.iter().map(|s| s.name).collect()
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn readme_lists_every_parameter() {
    assert_none(readme_parameter_problems(&read("README.md"), PARAMS));
}

#[test]
fn reference_lists_every_parameter() {
    assert_none(reference_parameter_problems(&read("doc/push.md"), PARAMS));
}

#[test]
fn readme_lists_every_statistic() {
    assert_none(readme_statistics_problems(
        &read("README.md"),
        &statistic_names(),
    ));
}

#[test]
fn reference_lists_every_statistic() {
    assert_none(reference_statistics_problems(
        &read("doc/push.md"),
        &statistic_names(),
    ));
}

#[test]
fn installed_readme_lists_every_parameter() {
    assert_none(text_parameter_problems(&rendered_readme(), PARAMS));
}

#[test]
fn installed_readme_lists_every_statistic() {
    assert_none(text_statistics_problems(
        &rendered_readme(),
        &statistic_names(),
    ));
}

/// Every heading of doc/push.md is in the rendered README, in order: the numbered sections as
/// "N. title" / "N.M. title", the questions of "Frequently Asked Questions" in chapter 2; and no
/// Markdown is left in it (backticks, `**`).
#[test]
fn installed_readme_keeps_every_heading_and_no_markdown() {
    let (doc, text) = (read("doc/push.md"), rendered_readme());
    let mut in_code = false;
    let mut in_faq = false;
    let mut from = 0;
    let mut questions = 0;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            in_faq = title == "Frequently Asked Questions";
            if in_faq {
                let at = text[from..]
                    .find("\nChapter 2. Frequently Asked Questions\n")
                    .expect("no chapter 2 for the questions");
                from += at;
            }
            if title == "Table of Contents" || in_faq {
                continue;
            }
        }
        let Some(title) = line
            .strip_prefix("## ")
            .or_else(|| line.strip_prefix("### "))
        else {
            continue;
        };
        let plain = title.replace('`', "").replace(" (int)", " (integer)");
        let wanted = if in_faq {
            questions += 1;
            format!("\n   2.{questions}.\n")
        } else {
            format!("\n{plain}\n")
        };
        match text[from..].find(&wanted) {
            Some(at) => from += at + wanted.len(),
            None => panic!("README.push lacks {wanted:?} (or has it out of order)"),
        }
        if in_faq {
            // The question follows its number, wrapped.
            let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            let after = squash(&text[from..]);
            assert!(
                after.starts_with(&squash(&plain)),
                "README.push question 2.{questions} is not {plain:?}"
            );
        }
    }
    assert!(questions > 0, "doc/push.md has no questions");
    for (n, line) in text.lines().enumerate() {
        assert!(
            !line.contains('`') && !line.contains("**"),
            "README.push line {}: Markdown left: {line:?}",
            n + 1
        );
    }
}

/// The checks above do fail: a parameter or statistic the docs lack, or one only the docs have,
/// is named.
#[test]
fn an_undocumented_or_removed_name_is_flagged() {
    let (readme, doc, text) = (read("README.md"), read("doc/push.md"), rendered_readme());
    let fewer = &PARAMS[1..];
    let gone = PARAMS[0].name;
    for problems in [
        readme_parameter_problems(&readme, fewer),
        reference_parameter_problems(&doc, fewer),
        text_parameter_problems(&text, fewer),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("`{gone}` is documented but not in the code"))),
            "{problems:?}"
        );
    }
    let mut more = statistic_names();
    more.push("new_counter");
    for problems in [
        readme_statistics_problems(&readme, &more),
        reference_statistics_problems(&doc, &more),
        text_statistics_problems(&text, &more),
    ] {
        assert_eq!(
            problems,
            [problems[0].split(':').next().unwrap().to_string()
                + ": `new_counter` is in the code but not documented"],
        );
    }
    // A parameter added to the code without docs: the same comparison, the other way round.
    let documented: Vec<String> = PARAMS.iter().map(|p| p.name.to_string()).collect();
    let mut declared: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
    declared.push("new_param");
    assert_eq!(
        compare("x", &documented, &declared),
        ["x: `new_param` is in the code but not documented"]
    );
}

/// Every Prometheus metric family is in README.md's and doc/push.md's metrics tables, and no
/// other: the first column of the table under each heading.
#[test]
fn readme_and_reference_list_every_metric() {
    let families: Vec<&str> = push_core::metrics::FAMILIES
        .iter()
        .map(|f| f.name)
        .collect();
    for (file, heading) in [
        ("README.md", "## Prometheus metrics"),
        ("doc/push.md", "### 7.1. Prometheus metrics"),
    ] {
        let text = read(file);
        let rows = first_table(&section(&text, heading));
        let documented: Vec<String> = rows.iter().flat_map(|r| backticked(&r[0])).collect();
        assert_none(compare(
            &format!("{file} metrics table"),
            &documented,
            &families,
        ));
    }
}
