//! Text for log lines. Bounding client-controlled text before it goes into a log line: a certificate subject or a
//! path can be tens of kilobytes, and every refused handshake or request would copy it.

use std::borrow::Cow;

/// Longest client-controlled string written to a log field, in bytes.
pub const LOG_FIELD_MAX: usize = 512;

/// `s` cut to at most `max` bytes (on a character boundary) with `…(N bytes)` appended when
/// cut; borrowed when it fits.
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…({} bytes)", &s[..end], s.len()))
}

/// `a: b: c` from an error and its causes, for logs (hyper's and rustls' top-level messages
/// rarely say what went wrong).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_long_strings_on_a_char_boundary() {
        assert!(matches!(bounded("short", 10), Cow::Borrowed("short")));
        assert_eq!(bounded("abcdef", 3), "abc…(6 bytes)");
        assert_eq!(bounded("ééé", 3), "é…(6 bytes)");
    }
}
