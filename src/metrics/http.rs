//! The wire syntax of `/metrics`: a request head parsed from bytes (by
//! `httparse`), and a [`Reply`] composed into bytes.
//!
//! Owns the head cap ([`HEAD_LIMIT`]) and every status line and header the
//! endpoint sends. Never touches a socket, never renders metrics and never
//! decides which reply a request gets (`mod.rs` does).

/// The most bytes a request head (request line and headers) may take. A
/// scrape's head is a few hundred bytes; past this a client is answered 431
/// and closed, so one connection holds at most this much of our memory.
pub const HEAD_LIMIT: usize = 8 << 10;

/// The most header lines a head may have (httparse needs a fixed table).
/// Prometheus sends about six.
const MAX_HEADERS: usize = 32;

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole head yet, and under [`HEAD_LIMIT`]: read more.
    Incomplete,
    /// A whole head. A body, if the client sends one, is never read.
    Request(Request<'a>),
    /// Not HTTP, or over a cap: answer this and close.
    Invalid(Reply),
}

/// The two parts of a request head that choose the reply.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target as sent, query string included.
    pub target: &'a str,
}

/// Parses the head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => match (request.method, request.path) {
            (Some(method), Some(target)) => Parsed::Request(Request { method, target }),
            _ => Parsed::Invalid(Reply::bad_request()),
        },
        Ok(httparse::Status::Partial) if buf.len() >= HEAD_LIMIT => {
            Parsed::Invalid(Reply::head_too_large())
        }
        Ok(httparse::Status::Partial) => Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => Parsed::Invalid(Reply::head_too_large()),
        Err(_) => Parsed::Invalid(Reply::bad_request()),
    }
}

/// A reply: status, content type and body. Every reply closes its
/// connection (`Connection: close`), which Prometheus and curl accept, so
/// no connection outlives one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The content type of the short human-readable replies (tiny_http's, which
/// served this endpoint before).
const PLAIN: &str = "text/plain; charset=UTF-8";

impl Reply {
    pub fn ok(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.into_bytes(),
        }
    }

    /// A short plain-text reply.
    pub fn plain(status: u16, text: &str) -> Reply {
        Reply {
            status,
            content_type: PLAIN,
            body: text.as_bytes().to_vec(),
        }
    }

    pub fn bad_request() -> Reply {
        Reply::plain(400, "bad request\n")
    }

    pub fn head_too_large() -> Reply {
        Reply::plain(431, "request head too large\n")
    }

    /// The reply's bytes; `with_body: false` for HEAD, which gets the same
    /// headers (Content-Length included) and no body.
    pub fn compose(&self, with_body: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if with_body {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase of each status the endpoint sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &[u8] = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n";

    #[test]
    fn a_whole_head_gives_method_and_target() {
        assert_eq!(
            parse(SCRAPE),
            Parsed::Request(Request {
                method: "GET",
                target: "/metrics?x=1"
            })
        );
    }

    #[test]
    fn every_split_of_a_head_is_incomplete_until_its_end() {
        for at in 0..SCRAPE.len() {
            assert_eq!(parse(&SCRAPE[..at]), Parsed::Incomplete, "at {at}");
        }
    }

    #[test]
    fn a_body_after_the_head_is_left_alone() {
        let mut bytes = b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n".to_vec();
        bytes.extend_from_slice(b"hello");
        assert!(matches!(parse(&bytes), Parsed::Request(r) if r.method == "POST"));
    }

    #[test]
    fn a_head_at_the_cap_is_refused_with_431() {
        let mut endless = b"GET /metrics HTTP/1.1\r\nX-A: ".to_vec();
        endless.resize(HEAD_LIMIT - 1, b'a');
        assert_eq!(parse(&endless), Parsed::Incomplete);
        endless.push(b'a');
        assert_eq!(parse(&endless), Parsed::Invalid(Reply::head_too_large()));
    }

    #[test]
    fn too_many_headers_is_431_and_garbage_is_400() {
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Invalid(Reply::head_too_large()));
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00"),
            Parsed::Invalid(Reply::bad_request())
        );
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n"),
            Parsed::Invalid(Reply::bad_request())
        );
    }

    #[test]
    fn head_gets_the_headers_without_the_body() {
        let reply = Reply::plain(404, "gone\n");
        assert_eq!(
            reply.compose(true),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=UTF-8\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\ngone\n"
        );
        assert_eq!(
            reply.compose(false),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=UTF-8\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\n"
        );
    }
}
