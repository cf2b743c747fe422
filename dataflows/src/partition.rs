//! Who owns what: the Kafka partition of a driver key and the timely worker that reads a
//! partition. Both are pure functions so producers, the source and tests agree on them.

/// Kafka's murmur2 hash (the Java client's default partitioner and librdkafka's `murmur2_random`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        if rest.len() == 3 {
            h ^= u32::from(rest[2]) << 16;
        }
        if rest.len() >= 2 {
            h ^= u32::from(rest[1]) << 8;
        }
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition Kafka's default partitioner picks for a key: `(murmur2(key) & 0x7fffffff) % n`.
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// The timely worker (global index over all processes) that reads a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOwner {
    pub worker_index: usize,
    pub total_workers: usize,
}

impl PartitionOwner {
    /// Partition `p` is read by the worker with `p % total_workers == worker_index`.
    pub fn owns(&self, partition: i32) -> bool {
        partition >= 0 && partition as usize % self.total_workers == self.worker_index
    }

    /// The partitions of a topic with `count` partitions that this worker reads.
    pub fn owned(&self, count: i32) -> Vec<i32> {
        (0..count).filter(|&p| self.owns(p)).collect()
    }
}

/// The exchange route of a keyed record: all records of one key meet on one worker.
pub fn key_route(key: &str) -> u64 {
    u64::from(murmur2(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2 (values as Java ints).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input) as i32, expected, "{:?}", std::str::from_utf8(input));
        }
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for total in 1..=7 {
            for partitions in 1..=13 {
                let mut owned: Vec<i32> =
                    (0..total).flat_map(|w| PartitionOwner { worker_index: w, total_workers: total }.owned(partitions)).collect();
                owned.sort();
                assert_eq!(owned, (0..partitions).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn key_partition_is_in_range_and_stable() {
        for p in 1..20 {
            assert!((0..p).contains(&key_partition(b"VER", p)));
        }
        assert_eq!(key_partition(b"HAM", 4), key_partition(b"HAM", 4));
    }
}
