//! `push-docgen [doc/push.md] [-o README.push]`: writes the plain-text README of the module
//! (Kamailio's module README layout) rendered from the reference. `scripts/package.sh` runs it
//! and installs the result as `/usr/share/doc/kamailio/modules/README.push.gz`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut input = String::from("doc/push.md");
    let mut output: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-o" => match args.next() {
                Some(path) => output = Some(path),
                None => return usage("-o needs a file name"),
            },
            "-h" | "--help" => return usage(""),
            other if other.starts_with('-') => return usage(&format!("unknown option {other}")),
            other => input = other.to_string(),
        }
    }
    let markdown = match std::fs::read_to_string(&input) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("push-docgen: {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = match push_docgen::render(&markdown) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("push-docgen: {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match output {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("push-docgen: {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    if !problem.is_empty() {
        eprintln!("push-docgen: {problem}");
    }
    eprintln!("usage: push-docgen [doc/push.md] [-o README.push]");
    if problem.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
