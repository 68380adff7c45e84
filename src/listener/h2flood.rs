//! HTTP/2 control-frame flood detection on the bytes a client sends: a small frame walker
//! (frame headers only, payloads skipped unread) counts PING and SETTINGS frames that ask for
//! an answer. A client that sends more than `h2_max_pings_per_second` of them in a second is
//! flooding (each costs the server a reply: 12M PINGs in 4 s cost 3.4 s of CPU). The same walker
//! follows the server's own frames, so that a GOAWAY ENHANCE_YOUR_CALM can be slipped in between
//! two of them before the connection is closed.

use std::time::Instant;

/// The client connection preface, which precedes the first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_PING: u8 = 0x6;
const TYPE_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
/// RFC 9113 section 7.
const ENHANCE_YOUR_CALM: u32 = 0xb;
const GOAWAY_DEBUG: &[u8] = b"PING/SETTINGS flood";

/// Follows frame boundaries in one direction of a connection.
struct FrameWalker {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    skip: usize,
}

impl FrameWalker {
    fn new(preface: usize) -> Self {
        Self {
            preface_left: preface,
            header: [0; FRAME_HEADER_LEN],
            have: 0,
            skip: 0,
        }
    }

    /// Walks `buf`, handing each completed frame header to `on_header`.
    fn walk<E>(
        &mut self,
        mut buf: &[u8],
        mut on_header: impl FnMut(&[u8; FRAME_HEADER_LEN]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !buf.is_empty() {
            let n = if self.preface_left > 0 {
                let n = self.preface_left.min(buf.len());
                self.preface_left -= n;
                n
            } else if self.skip > 0 {
                let n = self.skip.min(buf.len());
                self.skip -= n;
                n
            } else {
                let n = (FRAME_HEADER_LEN - self.have).min(buf.len());
                self.header[self.have..self.have + n].copy_from_slice(&buf[..n]);
                self.have += n;
                if self.have == FRAME_HEADER_LEN {
                    self.have = 0;
                    let h = &self.header;
                    self.skip =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    on_header(h)?;
                }
                n
            };
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Between two frames (a frame of our own may be written now).
    fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.have == 0 && self.skip == 0
    }
}

pub struct FloodGuard {
    limit: u32,
    inbound: FrameWalker,
    outbound: FrameWalker,
    window: Option<Instant>,
    in_window: u32,
    /// The highest stream a client opened (HEADERS on an odd stream id): the GOAWAY's last
    /// stream, so the client knows nothing it opened was dropped unseen.
    last_stream: u32,
}

impl FloodGuard {
    pub fn new(limit_per_second: u32) -> Self {
        Self {
            limit: limit_per_second,
            inbound: FrameWalker::new(PREFACE_LEN),
            outbound: FrameWalker::new(0),
            window: None,
            in_window: 0,
            last_stream: 0,
        }
    }

    /// Scans bytes the client sent; `Err` with the count once it exceeded the limit.
    pub fn inbound(&mut self, buf: &[u8]) -> Result<(), u32> {
        let Self {
            inbound,
            limit,
            window,
            in_window,
            last_stream,
            ..
        } = self;
        inbound.walk(buf, |h| {
            if h[3] == TYPE_HEADERS {
                let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if id % 2 == 1 {
                    *last_stream = (*last_stream).max(id);
                }
            }
            let asks_answer = matches!(h[3], TYPE_PING | TYPE_SETTINGS) && h[4] & FLAG_ACK == 0;
            if !asks_answer || *limit == 0 {
                return Ok(());
            }
            let now = Instant::now();
            match window {
                Some(start) if now.duration_since(*start).as_secs() < 1 => *in_window += 1,
                _ => {
                    *window = Some(now);
                    *in_window = 1;
                }
            }
            if *in_window > *limit {
                Err(*in_window)
            } else {
                Ok(())
            }
        })
    }

    /// Follows bytes the server wrote (only the ones the transport accepted).
    pub fn outbound(&mut self, buf: &[u8]) {
        let _ = self.outbound.walk(buf, |_| Ok::<(), ()>(()));
    }

    /// GOAWAY ENHANCE_YOUR_CALM naming the last stream the client opened — if the server's
    /// output is between frames, so that the frame can go out whole; `None` otherwise.
    pub fn goaway(&self) -> Option<Vec<u8>> {
        if !self.outbound.at_boundary() {
            return None;
        }
        let len = 8 + GOAWAY_DEBUG.len();
        let mut f = Vec::with_capacity(FRAME_HEADER_LEN + len);
        f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&[TYPE_GOAWAY, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&self.last_stream.to_be_bytes());
        f.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        f.extend_from_slice(GOAWAY_DEBUG);
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[ty, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn counts_pings_across_split_reads_and_skips_payloads() {
        let mut g = FloodGuard::new(3);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(TYPE_SETTINGS, 0, 0, &[0; 6]));
        bytes.extend(frame(TYPE_SETTINGS, FLAG_ACK, 0, &[]));
        // A DATA frame whose payload looks like PING frames must not count.
        let fake = frame(TYPE_PING, 0, 0, &[0; 8]).repeat(5);
        bytes.extend(frame(0x0, 0, 1, &fake));
        bytes.extend(frame(TYPE_PING, 0, 0, &[1; 8]));
        bytes.extend(frame(TYPE_PING, FLAG_ACK, 0, &[1; 8]));
        // Fed one byte at a time: 1 SETTINGS + 1 PING asking for answers.
        for b in &bytes {
            g.inbound(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(g.in_window, 2);
        g.inbound(&frame(TYPE_PING, 0, 0, &[2; 8])).unwrap();
        assert_eq!(g.inbound(&frame(TYPE_PING, 0, 0, &[3; 8])), Err(4));
    }

    #[test]
    fn zero_means_no_limit() {
        let mut g = FloodGuard::new(0);
        g.inbound(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        let flood = frame(TYPE_PING, 0, 0, &[0; 8]).repeat(10_000);
        assert!(g.inbound(&flood).is_ok());
    }

    #[test]
    fn goaway_names_the_last_client_stream_and_waits_for_a_frame_boundary() {
        let mut g = FloodGuard::new(1);
        g.inbound(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        g.inbound(&frame(TYPE_HEADERS, 0x5, 7, &[0x82])).unwrap();
        g.inbound(&frame(TYPE_HEADERS, 0x5, 3, &[0x82])).unwrap();
        // The server is half-way through a frame: no GOAWAY yet.
        let out = frame(TYPE_PING, FLAG_ACK, 0, &[9; 8]);
        g.outbound(&out[..5]);
        assert!(g.goaway().is_none());
        g.outbound(&out[5..]);
        let goaway = g.goaway().expect("between frames");
        assert_eq!(&goaway[3..5], &[TYPE_GOAWAY, 0]);
        assert_eq!(&goaway[9..13], &7u32.to_be_bytes(), "last stream");
        assert_eq!(&goaway[13..17], &ENHANCE_YOUR_CALM.to_be_bytes());
        assert_eq!(goaway.len(), 9 + 8 + GOAWAY_DEBUG.len());
        assert_eq!(usize::from(goaway[2]), 8 + GOAWAY_DEBUG.len());
    }
}
