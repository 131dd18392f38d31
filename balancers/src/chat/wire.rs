//! The chat wire format, as pure functions: what the client sends for a line of input.

/// Removes one trailing `\n` (and a `\r` before it) from a line read from stdin.
pub fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// True when the line (without its end of line) asks the client to quit: exactly `q` or `Q`.
pub fn is_quit(line: &[u8]) -> bool {
    matches!(strip_eol(line), b"q" | b"Q")
}

/// The bytes the client sends for one stdin line: `[nickname] line\n`.
///
/// The line's own end of line (if any) is replaced by a single `\n`, as the original's
/// `fgets` + `sprintf("%s %s", name, msg)` produced.
pub fn frame_line(nickname: &str, line: &[u8]) -> Vec<u8> {
    let body = strip_eol(line);
    let mut out = Vec::with_capacity(nickname.len() + body.len() + 4);
    out.push(b'[');
    out.extend_from_slice(nickname.as_bytes());
    out.extend_from_slice(b"] ");
    out.extend_from_slice(body);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_line_with_the_nickname() {
        assert_eq!(frame_line("alice", b"hello\n"), b"[alice] hello\n");
    }

    #[test]
    fn frames_a_last_line_without_newline_and_crlf() {
        assert_eq!(frame_line("bob", b"bye"), b"[bob] bye\n");
        assert_eq!(frame_line("bob", b"hi\r\n"), b"[bob] hi\n");
        assert_eq!(frame_line("n", b"\n"), b"[n] \n");
    }

    #[test]
    fn frames_non_utf8_bytes_unchanged() {
        assert_eq!(frame_line("x", b"\xff\xfe\n"), b"[x] \xff\xfe\n");
    }

    #[test]
    fn quit_only_on_exactly_q() {
        assert!(is_quit(b"q\n"));
        assert!(is_quit(b"Q\n"));
        assert!(is_quit(b"q"));
        assert!(is_quit(b"q\r\n"));
        assert!(!is_quit(b"q \n"));
        assert!(!is_quit(b" q\n"));
        assert!(!is_quit(b"quit\n"));
        assert!(!is_quit(b"\n"));
        assert!(!is_quit(b"qq\n"));
    }
}
