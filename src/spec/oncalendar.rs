//! systemd OnCalendar expressions (`etcd.snapshot_schedule`), checked against a
//! conservative subset of systemd.time(7): a named shorthand, or
//! `[weekdays] [date] [time] [UTC]` built from digits, `*`, `,`, `..`, `/`, `~`.
//! What passes can only be one line of a unit file: no spaces but single separators,
//! no `%` specifiers, no control characters.

const SHORTHANDS: [&str; 9] = [
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "semiannually",
    "yearly",
    "annually",
];

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn is_weekday(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .any(|d| s == *d || (s.len() == 3 && d.starts_with(&s)))
}

/// `Mon`, `Mon,Fri`, `Mon..Fri`, `Sat,Sun`.
fn is_weekdays(token: &str) -> bool {
    token
        .split(',')
        .all(|part| part.split("..").all(is_weekday) && part.split("..").count() <= 2)
}

fn only(token: &str, allowed: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_digit() || allowed.contains(c))
}

/// `*-*-*`, `2026-01-01`, `*-*~01`, `*-01,07-01`.
fn is_date(token: &str) -> bool {
    only(token, "*,./~-") && token.contains('-') && !token.starts_with('-')
}

/// `03:00`, `*:0/15`, `00/2:00:00`.
fn is_time(token: &str) -> bool {
    only(token, "*,./:") && token.contains(':') && !token.starts_with(':')
}

/// Only `UTC`: systemd refuses a zone its node lacks, which paasgen cannot know here.
fn is_timezone(token: &str) -> bool {
    token == "UTC"
}

/// Why `expr` is not an OnCalendar expression paasgen accepts, if it is not.
pub fn problem(expr: &str) -> Option<String> {
    const HINT: &str =
        "give a systemd OnCalendar expression, e.g. hourly, daily, `*-*-* 03:00` or `Mon..Fri 22:30`";
    if expr.is_empty() || expr.len() > 100 {
        return Some(HINT.into());
    }
    if expr.chars().any(|c| c.is_control()) {
        return Some(format!(
            "control characters (a newline?) are not allowed: {HINT}"
        ));
    }
    if SHORTHANDS.contains(&expr) {
        return None;
    }
    let tokens: Vec<&str> = expr.split(' ').collect();
    // Each kind of token at most once, in systemd's order.
    let kinds: [fn(&str) -> bool; 4] = [is_weekdays, is_date, is_time, is_timezone];
    let mut next = 0;
    for token in &tokens {
        match (next..kinds.len()).find(|&k| kinds[k](token)) {
            Some(k) => next = k + 1,
            None => return Some(HINT.into()),
        }
    }
    // A timezone alone is not a schedule.
    if tokens == ["UTC"] {
        return Some(HINT.into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::problem;

    const ACCEPTED: &[&str] = &[
        "hourly",
        "daily",
        "semiannually",
        "Mon..Fri 22:30",
        "Sat,Sun 20:00",
        "*-*-* 00/2:00:00",
        "*:0/15",
        "2026-01-01",
        "*-*-* *:00:00 UTC",
        "*-*~01",
        "Monday *-*-* 10:00",
    ];

    const REFUSED: &[&str] = &[
        "",
        "hourly\nUnit=reboot.target",
        "hourly\rx",
        "daily 10:00",
        "hourly UTC",
        "1..5 10:00",
        "$(reboot)",
        "hourly; reboot",
        "*-*-*  03:00",
        "%n",
        "UTC",
        "03:00 Mon",
        "03:00 Foo",
        "*-*-* 03:00 Europe/Berlin",
    ];

    #[test]
    fn accepts_systemd_calendar_forms_and_refuses_the_rest() {
        for e in ACCEPTED {
            assert_eq!(problem(e), None, "{e:?}");
        }
        for e in REFUSED {
            assert!(problem(e).is_some(), "{e:?}");
        }
    }
}
