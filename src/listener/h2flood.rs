//! HTTP/2 control-frame flood detection on the bytes a client sends: a small frame scanner
//! (frame headers only, payloads skipped unread) counts PING and SETTINGS frames that ask for
//! an answer. A client that sends more than `h2_max_pings_per_second` of them in a second is
//! flooding (each costs the server a reply: 12M PINGs in 4 s cost 3.4 s of CPU): its
//! connection is cut.

use std::time::Instant;

/// The client connection preface, which precedes the first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;

pub struct FrameScanner {
    limit: u32,
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    skip: usize,
    window: Option<Instant>,
    in_window: u32,
}

impl FrameScanner {
    pub fn new(limit_per_second: u32) -> Self {
        Self {
            limit: limit_per_second,
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            have: 0,
            skip: 0,
            window: None,
            in_window: 0,
        }
    }

    /// Scans bytes the client sent; `Err` once it exceeded the limit.
    pub fn feed(&mut self, mut buf: &[u8]) -> Result<(), u32> {
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
                    let asks_answer =
                        matches!(h[3], TYPE_PING | TYPE_SETTINGS) && h[4] & FLAG_ACK == 0;
                    if asks_answer {
                        self.count()?;
                    }
                }
                n
            };
            buf = &buf[n..];
        }
        Ok(())
    }

    fn count(&mut self) -> Result<(), u32> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        match self.window {
            Some(start) if now.duration_since(start).as_secs() < 1 => self.in_window += 1,
            _ => {
                self.window = Some(now);
                self.in_window = 1;
            }
        }
        if self.in_window > self.limit {
            Err(self.in_window)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            ty,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn counts_pings_across_split_reads_and_skips_payloads() {
        let mut s = FrameScanner::new(3);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(TYPE_SETTINGS, 0, &[0; 6]));
        bytes.extend(frame(TYPE_SETTINGS, FLAG_ACK, &[]));
        // A DATA frame whose payload looks like PING frames must not count.
        let fake = frame(TYPE_PING, 0, &[0; 8]).repeat(5);
        bytes.extend(frame(0x0, 0, &fake));
        bytes.extend(frame(TYPE_PING, 0, &[1; 8]));
        bytes.extend(frame(TYPE_PING, FLAG_ACK, &[1; 8]));
        // Fed one byte at a time: 1 SETTINGS + 1 PING asking for answers.
        for b in &bytes {
            s.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(s.in_window, 2);
        s.feed(&frame(TYPE_PING, 0, &[2; 8])).unwrap();
        assert_eq!(s.feed(&frame(TYPE_PING, 0, &[3; 8])), Err(4));
    }

    #[test]
    fn zero_means_no_limit() {
        let mut s = FrameScanner::new(0);
        s.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        let flood = frame(TYPE_PING, 0, &[0; 8]).repeat(10_000);
        assert!(s.feed(&flood).is_ok());
    }
}
