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
    // serde_path_to_error tracks where in the spec a type error happened.
    let mut path = String::new();
    let spec: Spec = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| SpecError {
        file: file.to_string(),
        problems: vec![from_yaml_error(&e, &path)],
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

fn from_yaml_error(e: &serde_saphyr::Error, path: &str) -> Problem {
    let location = e.location();
    let message = match e {
        // The library's own words name its options; the user only needs the key.
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
            format!("duplicate key `{}`", super::shown(k, 64))
        }
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => "duplicate key".into(),
        serde_saphyr::Error::Budget { .. } => {
            "the spec is too large or too deeply nested to read".into()
        }
        _ => {
            let raw = e.to_string();
            // The library appends " at line L, column C"; we print the location ourselves.
            let raw = match raw.rfind(" at line ") {
                Some(i) => raw[..i].to_string(),
                None => raw,
            };
            plain_number_message(&raw).unwrap_or(raw)
        }
    };
    // `.` is the document itself, `?` a place serde could not name (a map key), and
    // `value` the inside of the spans kept for nodes and some network fields.
    let path = path
        .replace("].value", "]")
        .trim_end_matches(".?")
        .trim_start_matches('.')
        .trim_start_matches('?')
        .to_string();
    // The network fields kept with their spans (`network.public`, ...) likewise.
    let path = match path.strip_suffix(".value") {
        Some(field) if field.starts_with("network.") => field.to_string(),
        _ => path,
    };
    Problem {
        severity: Severity::Error,
        path,
        line: location.map(|l| l.line()),
        column: location.map(|l| l.column()),
        message: with_suggestion(&message),
    }
}

/// serde's "invalid u8" in words a spec author knows.
fn plain_number_message(raw: &str) -> Option<String> {
    let range = match raw {
        "invalid u8" => "0 to 255",
        "invalid u16" => "0 to 65535",
        "invalid u32" => "0 to 4294967295",
        _ => return None,
    };
    Some(format!("expected a whole number from {range}"))
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
