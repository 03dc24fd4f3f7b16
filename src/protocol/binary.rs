//! The binary protocol's one reply: a refusal.
//!
//! ferrocache speaks only the text protocol (as IronCache did). A connection
//! whose first byte is the binary request magic (0x80) gets one well-formed
//! binary error response, so a binary client can show why, and is closed.

/// First byte of every binary-protocol request.
pub const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
/// "Unknown command" in the binary protocol's status table.
const STATUS_UNKNOWN_COMMAND: u16 = 0x0081;
pub const REFUSAL_MESSAGE: &str =
    "ferrocache speaks only the memcached text protocol; configure your client for ASCII/text";

/// Builds the error response to the (possibly partial) request header in
/// `header`, echoing its opcode and opaque where present.
pub fn refusal(header: &[u8]) -> Vec<u8> {
    let opcode = header.get(1).copied().unwrap_or(0);
    let opaque: [u8; 4] = match header.get(12..16) {
        Some(o) => [o[0], o[1], o[2], o[3]],
        None => [0; 4],
    };
    let body = REFUSAL_MESSAGE.as_bytes();
    let mut out = Vec::with_capacity(24 + body.len());
    out.push(RESPONSE_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&0u16.to_be_bytes()); // key length
    out.push(0); // extras length
    out.push(0); // data type
    out.extend_from_slice(&STATUS_UNKNOWN_COMMAND.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&opaque);
    out.extend_from_slice(&0u64.to_be_bytes()); // cas
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_opcode_and_opaque() {
        let mut req = vec![0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        req.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        req.extend_from_slice(&[0; 8]);
        let r = refusal(&req);
        assert_eq!(&r[..2], &[0x81, 0x0a]);
        assert_eq!(&r[6..8], &[0x00, 0x81]);
        assert_eq!(
            u32::from_be_bytes(r[8..12].try_into().unwrap()) as usize,
            r.len() - 24
        );
        assert_eq!(&r[12..16], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&r[24..], REFUSAL_MESSAGE.as_bytes());
    }
}
