//! Parsing of the Go-style duration strings used in the CRD (`"6h"`, `"90m"`, `"1h30m"`).
//!
//! The same grammar is enforced by the CRD's `pattern`, and the API server's CEL `duration()` accepts
//! it, so what passes `kubectl apply` parses here. Pure code: no I/O.

use std::time::Duration;

/// Regular expression the CRD uses for duration fields (units h, m, s, ms; decimals allowed).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$";

/// Parses `"1h30m"`-style strings. Returns a message suitable for a status condition on failure.
pub fn parse(input: &str) -> Result<Duration, String> {
    let bad = || format!("{input:?} is not a duration such as \"6h\", \"90m\" or \"1h30m\"");
    if input.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number = &rest[..num_len];
        // Same grammar as the CRD pattern: digits, optionally "." and more digits (no ".5", "5.").
        if number.starts_with('.') || number.ends_with('.') || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let (unit_secs, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return Err(bad());
        };
        total += value * unit_secs;
        rest = &rest[unit_len..];
    }
    // Bounded well below f64 precision issues: anything beyond a year is nonsense for this operator.
    if !total.is_finite() || total > 366.0 * 86400.0 {
        return Err(format!("{input:?} is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Renders a duration the way the CRD accepts it (whole seconds, largest units first).
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "h",
            "6",
            "6d",
            "-1h",
            "1h-",
            "1..5h",
            "1e9h",
            "99999999999h",
            "1hh",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["6h", "1h30m", "10s", "0s", "2h5s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
