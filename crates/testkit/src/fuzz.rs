//! A small mutational fuzzer for property tests on stable Rust: from valid seed inputs it makes
//! damaged variants — bits flipped, bytes set to syntax characters, ranges deleted, duplicated
//! (up to thousands of times, to make bombs), spliced from another seed, truncated. Seeded and
//! deterministic, so a failure names the iteration that reproduces it, and bounded by the count
//! the test asks for, so it fits the test command's time.

/// A seeded source of mutants.
pub struct Mutator {
    state: u64,
}

/// Bytes that mean something to the parsers under test (YAML, JSON, XML, PDF, CSV, protobuf).
const INTERESTING: &[u8] = b"\0\xff\x7f\x80{}[]<>:&*!|-\n\r\t\"'#%/\\,;=@\x08\x0a\x12\x1a";

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator { state: seed.max(1) }
    }

    /// xorshift64*: quality enough to pick mutations, and no dependency.
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// One to four mutations of a seed picked from `seeds`, never longer than `max_len`.
    pub fn mutant(&mut self, seeds: &[Vec<u8>], max_len: usize) -> Vec<u8> {
        let mut out = seeds[self.below(seeds.len())].clone();
        for _ in 0..1 + self.below(4) {
            self.mutate(&mut out, seeds, max_len);
        }
        out.truncate(max_len);
        out
    }

    fn range(&mut self, len: usize) -> (usize, usize) {
        let start = self.below(len + 1);
        let end = start + self.below(len - start + 1).min(64);
        (start, end)
    }

    fn mutate(&mut self, out: &mut Vec<u8>, seeds: &[Vec<u8>], max_len: usize) {
        let len = out.len();
        match self.below(8) {
            0 if len > 0 => {
                let i = self.below(len);
                out[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                out[i] = INTERESTING[self.below(INTERESTING.len())];
            }
            2 => {
                let (start, end) = self.range(len);
                out.drain(start..end);
            }
            3 => {
                // Repeat a range many times: nesting, long scalars, alias and table bombs.
                let (start, end) = self.range(len);
                let piece = out[start..end].to_vec();
                if !piece.is_empty() {
                    let most = if self.below(4) == 0 { 5_000 } else { 8 };
                    let times = 1 + self.below(most);
                    let room = max_len.saturating_sub(len) / piece.len();
                    let repeated = piece.repeat(times.min(room));
                    out.splice(end..end, repeated);
                }
            }
            4 => {
                let other = &seeds[self.below(seeds.len())];
                let (start, end) = self.range(other.len());
                let at = self.below(len + 1);
                out.splice(at..at, other[start..end].iter().copied());
            }
            5 => {
                let at = self.below(len + 1);
                out.truncate(at);
            }
            6 => {
                let at = self.below(len + 1);
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            _ => {
                let at = self.below(len + 1);
                let c = INTERESTING[self.below(INTERESTING.len())];
                out.insert(at, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mutator;

    #[test]
    fn mutants_are_deterministic_bounded_and_varied() {
        let seeds = vec![
            b"language: en\ngreeting: Hello\n".to_vec(),
            b"{\"a\": [1]}".to_vec(),
        ];
        let run = |seed| {
            let mut m = Mutator::new(seed);
            (0..200).map(|_| m.mutant(&seeds, 4096)).collect::<Vec<_>>()
        };
        let (a, b) = (run(7), run(7));
        assert_eq!(a, b, "the same seed gives the same mutants");
        assert!(a.iter().all(|m| m.len() <= 4096));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        assert!(
            a.iter().any(|m| m.len() > 1000),
            "some mutants grow into bombs"
        );
    }
}
