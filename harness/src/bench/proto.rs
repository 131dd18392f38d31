//! The bench's wire protocol, shared by the backends and the load generator.
//!
//! Two services, one port each on every server:
//! - bulk sink ([`SINK_PORT`]): the client sends any number of bytes, then half-closes;
//!   the server answers with the count it received as 8 big-endian bytes, then closes.
//!   The client compares that count with what it sent: the difference is lost bytes.
//! - request/response ([`RR_PORT`]): the client sends requests of [`REQUEST_LEN`] bytes;
//!   for each, the server answers [`RESPONSE_LEN`] bytes whose first byte is the server's
//!   index and whose other bytes are [`RESPONSE_FILL`]. The client checks every response
//!   and counts which server answered.

/// Port of the bulk sink on every server.
pub const SINK_PORT: u16 = 5201;
/// Port of the request/response service on every server.
pub const RR_PORT: u16 = 8080;
/// Bytes of one request (about a small HTTP GET).
pub const REQUEST_LEN: usize = 64;
/// Bytes of one response (about a small HTTP response).
pub const RESPONSE_LEN: usize = 128;
/// Filler byte of requests.
pub const REQUEST_FILL: u8 = b'q';
/// Filler byte of responses (after the server index).
pub const RESPONSE_FILL: u8 = b'r';

/// The request every client sends.
pub fn request() -> [u8; REQUEST_LEN] {
    [REQUEST_FILL; REQUEST_LEN]
}

/// The response server `index` sends.
pub fn response(index: u8) -> [u8; RESPONSE_LEN] {
    let mut r = [RESPONSE_FILL; RESPONSE_LEN];
    r[0] = index;
    r
}

/// Whether `req` is a well-formed request.
pub fn is_request(req: &[u8]) -> bool {
    req.len() == REQUEST_LEN && req.iter().all(|&b| b == REQUEST_FILL)
}

/// The index of the server that sent `resp`, or `None` when the response is malformed.
pub fn response_server(resp: &[u8], servers: usize) -> Option<usize> {
    let (&first, rest) = resp.split_first()?;
    let ok = resp.len() == RESPONSE_LEN
        && usize::from(first) < servers
        && rest.iter().all(|&b| b == RESPONSE_FILL);
    ok.then_some(usize::from(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_name_their_server() {
        assert_eq!(response_server(&response(2), 3), Some(2));
        assert_eq!(response_server(&response(0), 1), Some(0));
    }

    #[test]
    fn malformed_responses_are_rejected() {
        assert_eq!(response_server(&response(3), 3), None, "index out of range");
        let mut r = response(1);
        r[RESPONSE_LEN - 1] = 0;
        assert_eq!(response_server(&r, 3), None, "corrupt body");
        assert_eq!(response_server(&r[..10], 3), None, "short");
        assert_eq!(response_server(&[], 3), None, "empty");
    }

    #[test]
    fn requests_are_checked() {
        assert!(is_request(&request()));
        assert!(!is_request(&request()[1..]));
        let mut q = request();
        q[5] = b'x';
        assert!(!is_request(&q));
    }
}
