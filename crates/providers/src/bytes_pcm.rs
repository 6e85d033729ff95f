//! Little-endian 16-bit PCM from byte chunks whose boundaries may split a sample.

/// Turns a byte stream into samples, keeping a dangling odd byte for the next chunk.
#[derive(Debug, Default)]
pub(crate) struct PcmAssembler {
    carry: Option<u8>,
}

impl PcmAssembler {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let Some(lo) = self.carry.take() {
            if let Some((&hi, tail)) = rest.split_first() {
                out.push(i16::from_le_bytes([lo, hi]));
                rest = tail;
            } else {
                self.carry = Some(lo);
                return out;
            }
        }
        let mut pairs = rest.chunks_exact(2);
        out.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        self.carry = pairs.remainder().first().copied();
        out
    }
}

/// Samples as little-endian bytes, the layout every provider here takes.
pub(crate) fn to_le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_survive_any_chunking() {
        let samples: Vec<i16> = vec![1, -2, 300, -32768, 32767];
        let bytes = to_le_bytes(&samples);
        for split in [vec![10], vec![1, 9], vec![3, 3, 4], vec![1, 1, 1, 1, 1, 5]] {
            let mut a = PcmAssembler::default();
            let mut got = Vec::new();
            let mut at = 0;
            for n in split {
                got.extend(a.push(&bytes[at..at + n]));
                at += n;
            }
            assert_eq!(got, samples);
        }
    }
}
