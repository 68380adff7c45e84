//! The revoked serial numbers of one CRL as a compact sorted set: every serial stored in a
//! fixed-width slot of one flat buffer (its length, then its bytes), found by binary search. A
//! million 16-byte serials take 17 MB and one allocation, instead of a million small heap
//! blocks.

/// Revoked serial numbers, in canonical form (minimal two's-complement DER INTEGER content).
#[derive(Debug, Default)]
pub struct SerialSet {
    /// Bytes per slot: one length byte, then `width - 1` bytes of serial, zero-padded.
    width: usize,
    slots: Vec<u8>,
}

/// The canonical form of a DER INTEGER's content octets: redundant leading sign bytes dropped
/// (0x00 before a byte below 0x80, 0xFF before one from 0x80), so the same number is found
/// however leniently the certificate and the CRL encoded it — and 255 (`00 FF`) stays distinct
/// from -1 (`FF`), as NIST PKITS 4.4.14 requires.
pub fn canonical(serial: &[u8]) -> &[u8] {
    let mut s = serial;
    while let [first, next, ..] = s {
        let redundant = (*first == 0x00 && *next < 0x80) || (*first == 0xff && *next >= 0x80);
        if !redundant {
            break;
        }
        s = &s[1..];
    }
    s
}

impl SerialSet {
    /// Builds the set from serials (in any order, any padding); duplicates are kept once.
    /// `longest` must be at least the longest canonical serial (and below 256).
    pub fn build<'a, I>(serials: I, longest: usize) -> Self
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let longest = longest.min(255);
        let width = longest + 1;
        let mut slots = Vec::new();
        for s in serials {
            let s = canonical(s);
            if s.len() > longest {
                continue;
            }
            slots.push(s.len() as u8);
            slots.extend_from_slice(s);
            slots.resize(slots.len() + longest - s.len(), 0);
        }
        let n = slots.len() / width;
        let slot = |i: usize| &slots[i * width..(i + 1) * width];
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|a, b| slot(*a as usize).cmp(slot(*b as usize)));
        order.dedup_by(|a, b| slot(*a as usize) == slot(*b as usize));
        let mut sorted = Vec::with_capacity(order.len() * width);
        for i in order {
            sorted.extend_from_slice(slot(i as usize));
        }
        Self {
            width,
            slots: sorted,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `serial` (DER INTEGER content octets) is in the set: O(log n), no allocation.
    pub fn contains(&self, serial: &[u8]) -> bool {
        let s = canonical(serial);
        if self.is_empty() || s.len() >= self.width {
            return false;
        }
        // Compare a slot with `s` as its slot would be, without building that slot.
        let cmp = |slot: &[u8]| {
            slot[0].cmp(&(s.len() as u8)).then_with(|| {
                let (body, pad) = slot[1..].split_at(s.len());
                body.cmp(s).then_with(|| {
                    if pad.iter().any(|b| *b != 0) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
            })
        };
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match cmp(&self.slots[mid * self.width..(mid + 1) * self.width]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// Bytes held (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(serials: &[&[u8]]) -> SerialSet {
        let width = serials
            .iter()
            .map(|s| canonical(s).len())
            .max()
            .unwrap_or(0);
        SerialSet::build(serials.iter().copied(), width)
    }

    #[test]
    fn finds_members_whatever_their_padding() {
        let s = set(&[
            &[0x01],
            &[0x00, 0x80, 0x01],
            &[0x7f, 0xff, 0xff],
            &[0x02, 0x00],
        ]);
        assert_eq!(s.len(), 4);
        assert!(s.contains(&[0x01]));
        assert!(s.contains(&[0x00, 0x01]));
        assert!(!s.contains(&[0x80, 0x01]), "a negative number");
        assert!(s.contains(&[0x00, 0x80, 0x01]));
        assert!(s.contains(&[0x00, 0x00, 0x80, 0x01]));
        assert!(s.contains(&[0x7f, 0xff, 0xff]));
        assert!(s.contains(&[0x02, 0x00]));
        assert!(!s.contains(&[0x02]));
        assert!(!s.contains(&[0x00]));
        assert!(!s.contains(&[0x01, 0x00, 0x00, 0x00]));
        assert!(!s.contains(&[0x00, 0x80, 0x02]));
    }

    #[test]
    fn the_sign_is_kept() {
        // 255 and -1 (PKITS 4.4.14 / 4.4.15), 128 and -128.
        let s = set(&[&[0xff], &[0x80]]);
        assert!(s.contains(&[0xff]));
        assert!(s.contains(&[0xff, 0xff]), "-1, not minimally encoded");
        assert!(!s.contains(&[0x00, 0xff]), "255 is not -1");
        assert!(!s.contains(&[0x00, 0x80]), "128 is not -128");
        assert!(s.contains(&[0x80]));
        assert_eq!(canonical(&[0x00, 0x00, 0x7f]), &[0x7f]);
        assert_eq!(canonical(&[0x00, 0x80]), &[0x00, 0x80]);
        assert_eq!(canonical(&[0xff, 0xff, 0x80]), &[0x80]);
        assert_eq!(canonical(&[0xff, 0x7f]), &[0xff, 0x7f]);
        assert_eq!(canonical(&[0x00]), &[0x00]);
    }

    #[test]
    fn duplicates_and_empty_sets() {
        let s = set(&[&[5], &[0, 5], &[5]]);
        assert_eq!(s.len(), 1);
        assert!(s.contains(&[5]));
        let e = set(&[]);
        assert!(e.is_empty());
        assert!(!e.contains(&[5]));
        assert!(!e.contains(&[]));
        assert_eq!(set(&[&[0], &[]]).len(), 2, "0 and an empty serial differ");
    }

    #[test]
    fn agrees_with_a_sorted_list_over_many_serials() {
        // Big-endian u64s with a zero byte in front: positive whatever their top bit.
        let der = |i: u64| {
            let mut v = vec![0u8];
            v.extend_from_slice(&i.to_be_bytes());
            v
        };
        let serials: Vec<Vec<u8>> = (0u64..5000).map(|i| der(i * 7919 + 3)).collect();
        let s = SerialSet::build(serials.iter().map(|v| v.as_slice()), 9);
        assert_eq!(s.len(), 5000);
        for i in 0u64..40000 {
            let member = i >= 3 && (i - 3) % 7919 == 0 && (i - 3) / 7919 < 5000;
            assert_eq!(s.contains(&der(i)), member, "{i}");
        }
    }
}
