//! YAML text -> `Spec`, with syntax and type errors turned into located `Problem`s.

use super::{validate, Problem, Severity, Spec, SpecError};
use std::path::Path;

/// Reads, parses and validates a spec file. Warnings come back beside the spec.
pub fn load(path: &Path) -> Result<(Spec, Vec<Problem>), SpecError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: file.clone(),
        problems: vec![problem("", None, format!("cannot read the file: {e}"))],
    })?;
    parse(&file, &text)
}

/// Parses and validates spec text; `file` only names it in messages.
pub fn parse(file: &str, text: &str) -> Result<(Spec, Vec<Problem>), SpecError> {
    let spec: Spec =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| SpecError {
            file: file.to_string(),
            problems: vec![from_yaml_error(&e)],
        })?;
    let problems = validate(&spec);
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Err(SpecError {
            file: file.to_string(),
            problems,
        });
    }
    Ok((spec, problems))
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! { with_snippet: false }
}

fn problem(path: &str, line: Option<u64>, message: String) -> Problem {
    Problem {
        severity: Severity::Error,
        path: path.to_string(),
        line,
        column: None,
        message,
    }
}

fn from_yaml_error(e: &serde_saphyr::Error) -> Problem {
    let location = e.location();
    let raw = e.to_string();
    // The library appends " at line L, column C"; we print the location ourselves.
    let message = match raw.rfind(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw,
    };
    Problem {
        severity: Severity::Error,
        path: String::new(),
        line: location.map(|l| l.line()),
        column: location.map(|l| l.column()),
        message: with_suggestion(&message),
    }
}

/// Adds "did you mean `x`?" to serde's unknown field / unknown variant messages.
fn with_suggestion(message: &str) -> String {
    let Some(unknown) = between(message, "unknown field `", "`")
        .or_else(|| between(message, "unknown variant `", "`"))
    else {
        return message.to_string();
    };
    let Some(expected) = message.split_once("expected one of ").map(|(_, rest)| rest) else {
        return message.to_string();
    };
    let best = expected
        .split(", ")
        .map(|c| c.trim_matches('`'))
        .map(|c| (strsim::damerau_levenshtein(unknown, c), c))
        .min();
    match best {
        Some((distance, candidate)) if distance <= 3 => {
            format!("{message} (did you mean `{candidate}`?)")
        }
        _ => message.to_string(),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        let m = with_suggestion(
            "unknown field `privat_cidr`, expected one of `private_cidr`, `public_cidr`",
        );
        assert!(m.ends_with("(did you mean `private_cidr`?)"), "{m}");
    }

    #[test]
    fn no_suggestion_when_nothing_is_close() {
        let m = with_suggestion("unknown field `zzzzzzzzzz`, expected one of `name`, `role`");
        assert!(!m.contains("did you mean"), "{m}");
    }
}
