//! The revoked serial numbers of one CRL as a compact sorted set: every serial stored
//! right-aligned in a fixed-width slot of one flat buffer (so numeric order is byte order), found
//! by binary search. A million 16-byte serials take 16 MB and one allocation, instead of a
//! million small heap blocks.

/// Revoked serial numbers, in canonical form (big-endian, no leading zero bytes).
#[derive(Debug, Default)]
pub struct SerialSet {
    width: usize,
    slots: Vec<u8>,
}

/// The canonical form of a DER INTEGER's content octets: leading zero bytes dropped, so the
/// same number is found however the certificate and the CRL padded it.
pub fn canonical(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    &serial[start..]
}

impl SerialSet {
    /// Builds the set from serials (in any order, any padding); duplicates are kept once.
    /// `width` must be at least the longest canonical serial.
    pub fn build<'a, I>(serials: I, width: usize) -> Self
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let mut slots = Vec::new();
        for s in serials {
            let s = canonical(s);
            debug_assert!(s.len() <= width);
            slots.resize(slots.len() + width - s.len(), 0);
            slots.extend_from_slice(s);
        }
        let n = slots.len().checked_div(width).unwrap_or(0);
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

    /// Whether `serial` (DER INTEGER content octets, padded or not) is in the set: O(log n),
    /// no allocation.
    pub fn contains(&self, serial: &[u8]) -> bool {
        let s = canonical(serial);
        if s.len() > self.width || self.is_empty() {
            return false;
        }
        let pad = self.width - s.len();
        let cmp = |slot: &[u8]| {
            // Compare the slot with `s` right-aligned in `width` bytes, without building it.
            let (head, tail) = slot.split_at(pad);
            if head.iter().any(|b| *b != 0) {
                std::cmp::Ordering::Greater
            } else {
                tail.cmp(s)
            }
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
        assert!(s.contains(&[0x80, 0x01]));
        assert!(s.contains(&[0x00, 0x80, 0x01]));
        assert!(s.contains(&[0x7f, 0xff, 0xff]));
        assert!(s.contains(&[0x02, 0x00]));
        assert!(!s.contains(&[0x02]));
        assert!(!s.contains(&[0x00]));
        assert!(!s.contains(&[0x01, 0x00, 0x00, 0x00]));
        assert!(!s.contains(&[0x80, 0x02]));
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
    }

    #[test]
    fn agrees_with_a_sorted_list_over_many_serials() {
        let serials: Vec<Vec<u8>> = (0u64..5000)
            .map(|i| (i * 7919 + 3).to_be_bytes().to_vec())
            .collect();
        let s = SerialSet::build(serials.iter().map(|v| v.as_slice()), 8);
        assert_eq!(s.len(), 5000);
        for i in 0u64..40000 {
            let member = i >= 3 && (i - 3) % 7919 == 0 && (i - 3) / 7919 < 5000;
            assert_eq!(s.contains(&i.to_be_bytes()), member, "{i}");
        }
    }
}
