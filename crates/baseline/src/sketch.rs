//! The bounded, mergeable summaries a profile is made of.
//!
//! | summary | holds | merge | bound |
//! |---|---|---|---|
//! | [`CountMap`] | counts per key, exact up to its capacity, then the heaviest keys (Space-Saving) | sum, keep the heaviest | `capacity` entries |
//! | [`Bloom`] | every key ever seen (membership, no false negatives) | bitwise or, exact | 8,192 bits |
//! | [`Histogram`] | a distribution on a log scale (4 buckets per doubling, ±9%) | sum per bucket, exact | ≤ 257 buckets, sparse |
//! | [`DaySet`] | the most recent distinct days of activity | union, keep the latest | 64 days |
//!
//! Every merge is commutative. [`Bloom`], [`Histogram`] and [`DaySet`] merge associatively
//! and exactly; [`CountMap`] does as long as no merge has to drop keys, and otherwise keeps
//! the heaviest keys with their counts exact or over-estimated by at most
//! [`CountMap::evicted`].

use serde::{Deserialize, Serialize};

/// Counts per key, bounded: the keys are kept sorted; past `capacity` distinct keys a new key
/// replaces the lightest (Space-Saving: it inherits the evicted count, so heavy hitters are
/// never lost and counts are over-estimates by at most the evicted weight).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountMap {
    entries: Vec<(u64, u32)>,
    /// Weight that left the map when keys were replaced or dropped on merge.
    evicted: u64,
}

impl CountMap {
    /// Adds `n` to `key`'s count; returns whether the key was not held before. `capacity`
    /// bounds the distinct keys held.
    #[inline]
    pub fn add(&mut self, key: u64, n: u32, capacity: usize) -> bool {
        match self.entries.binary_search_by_key(&key, |e| e.0) {
            Ok(i) => {
                self.entries[i].1 = self.entries[i].1.saturating_add(n);
                false
            }
            Err(i) if self.entries.len() < capacity.max(1) => {
                self.entries.insert(i, (key, n));
                true
            }
            Err(_) => {
                // Space-Saving: the new key takes the lightest slot and its count.
                let (lightest, &(_, min)) = self
                    .entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| (e.1, e.0))
                    .expect("capacity is at least 1");
                self.entries.remove(lightest);
                self.evicted += u64::from(min);
                let at = self
                    .entries
                    .binary_search_by_key(&key, |e| e.0)
                    .unwrap_or_else(|i| i);
                self.entries.insert(at, (key, min.saturating_add(n)));
                true
            }
        }
    }

    /// The count of `key`, if it is held.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        self.entries
            .binary_search_by_key(&key, |e| e.0)
            .ok()
            .map(|i| self.entries[i].1)
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the held counts.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.1)).sum()
    }

    /// Keys held with a count of exactly one (Good-Turing's N1: how often something new
    /// turned up).
    pub fn singletons(&self) -> usize {
        self.entries.iter().filter(|e| e.1 == 1).count()
    }

    /// Weight lost to replacement or to merges beyond capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The held entries, by key.
    pub fn entries(&self) -> &[(u64, u32)] {
        &self.entries
    }

    /// The `n` heaviest entries, heaviest first (ties by key).
    pub fn top(&self, n: usize) -> Vec<(u64, u32)> {
        let mut top = self.entries.clone();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    /// Adds `other`'s counts; keeps the `capacity` heaviest keys (ties by key, so the result
    /// does not depend on the order of merges while nothing is dropped).
    pub fn merge(&mut self, other: &CountMap, capacity: usize) {
        let mut merged = Vec::with_capacity(self.entries.len() + other.entries.len());
        let (mut a, mut b) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1.saturating_add(y.1)));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    merged.push(**x);
                    a.next();
                }
                (Some(_), Some(y)) => {
                    merged.push(**y);
                    b.next();
                }
                (Some(x), None) => {
                    merged.push(**x);
                    a.next();
                }
                (None, Some(y)) => {
                    merged.push(**y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.evicted += other.evicted;
        if merged.len() > capacity {
            merged.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            self.evicted += merged[capacity..]
                .iter()
                .map(|e| u64::from(e.1))
                .sum::<u64>();
            merged.truncate(capacity);
            merged.sort_unstable_by_key(|e| e.0);
        }
        self.entries = merged;
    }

    /// Gives back spare capacity.
    pub fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(u64, u32)>()
    }

    /// Whether the keys are sorted and within `capacity` (a loaded file is checked).
    pub(crate) fn is_valid(&self, capacity: usize) -> bool {
        self.entries.len() <= capacity && self.entries.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

/// Words of a [`Bloom`] filter.
pub const BLOOM_WORDS: usize = 128;
const BLOOM_BITS: u64 = (BLOOM_WORDS * 64) as u64;

/// Every key a profile has ever seen (a Bloom filter of 8,192 bits, three probes): no false
/// negatives; about 0.5% false positives at 500 distinct keys. Once more than half of its
/// bits are set it is [`Bloom::saturated`] and novelty is no longer judged from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bloom {
    bits: Vec<u64>,
}

impl Default for Bloom {
    fn default() -> Self {
        Bloom {
            bits: vec![0; BLOOM_WORDS],
        }
    }
}

impl Bloom {
    #[inline]
    fn probes(key: u64) -> [u64; 3] {
        let h1 = key;
        let h2 = crate::hash::mix(key) | 1;
        [
            h1 % BLOOM_BITS,
            h1.wrapping_add(h2) % BLOOM_BITS,
            h1.wrapping_add(h2.wrapping_mul(2)) % BLOOM_BITS,
        ]
    }

    /// Records `key`.
    #[inline]
    pub fn insert(&mut self, key: u64) {
        for bit in Self::probes(key) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Whether `key` may have been recorded (certainly not, when false).
    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        Self::probes(key)
            .iter()
            .all(|&bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Whether more than half of the bits are set (false positives above ~12%).
    pub fn saturated(&self) -> bool {
        let set: u32 = self.bits.iter().map(|w| w.count_ones()).sum();
        u64::from(set) * 2 > BLOOM_BITS
    }

    /// Adds everything `other` has seen.
    pub fn merge(&mut self, other: &Bloom) {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.bits.capacity() * 8
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.bits.len() == BLOOM_WORDS
    }
}

/// Buckets per doubling of a [`Histogram`].
const SUB_BUCKETS: u32 = 4;

/// A distribution of non-negative integers on a log scale: bucket 0 holds zeros, then four
/// buckets per power of two (each bucket's values are within 19% of each other). Sparse:
/// only buckets with counts are held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    buckets: Vec<(u16, u32)>,
}

impl Histogram {
    /// The bucket of a value.
    #[inline]
    pub fn bucket(value: u64) -> u16 {
        if value == 0 {
            return 0;
        }
        let exponent = 63 - value.leading_zeros();
        let mantissa = if exponent >= 2 {
            ((value >> (exponent - 2)) & 3) as u32
        } else {
            ((value << (2 - exponent)) & 3) as u32
        };
        (1 + exponent * SUB_BUCKETS + mantissa) as u16
    }

    /// The smallest value of a bucket.
    pub fn lower(bucket: u16) -> u64 {
        if bucket == 0 {
            return 0;
        }
        let b = u32::from(bucket) - 1;
        let (exponent, mantissa) = (b / SUB_BUCKETS, u64::from(b % SUB_BUCKETS));
        if exponent >= 2 {
            (4 + mantissa) << (exponent - 2)
        } else {
            ((4 + mantissa) >> (2 - exponent)).max(1)
        }
    }

    /// A representative value of a bucket: the middle of its range.
    pub fn representative(bucket: u16) -> u64 {
        let low = Self::lower(bucket);
        if bucket == 0 || bucket == u16::MAX {
            return low;
        }
        let high = Self::lower(bucket + 1).max(low + 1);
        low + (high - 1 - low) / 2
    }

    /// Counts one value.
    #[inline]
    pub fn add(&mut self, value: u64) {
        self.add_bucket(Self::bucket(value), 1);
    }

    fn add_bucket(&mut self, bucket: u16, n: u32) {
        match self.buckets.binary_search_by_key(&bucket, |b| b.0) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(n),
            Err(i) => self.buckets.insert(i, (bucket, n)),
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| u64::from(b.1)).sum()
    }

    /// The value at quantile `q` (0..=1), as its bucket's representative; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for &(bucket, n) in &self.buckets {
            seen += u64::from(n);
            if seen >= rank {
                return Some(Self::representative(bucket));
            }
        }
        self.buckets.last().map(|b| Self::representative(b.0))
    }

    /// The largest value's bucket representative.
    pub fn max(&self) -> Option<u64> {
        self.buckets.last().map(|b| Self::representative(b.0))
    }

    /// The median absolute deviation (around the median), from bucket representatives.
    pub fn mad(&self) -> Option<u64> {
        let median = self.quantile(0.5)?;
        let mut deviations: Vec<(u64, u32)> = self
            .buckets
            .iter()
            .map(|&(b, n)| (Self::representative(b).abs_diff(median), n))
            .collect();
        deviations.sort_unstable();
        let half = self.count().div_ceil(2);
        let mut seen = 0u64;
        for (deviation, n) in deviations {
            seen += u64::from(n);
            if seen >= half {
                return Some(deviation);
            }
        }
        None
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Histogram) {
        for &(bucket, n) in &other.buckets {
            self.add_bucket(bucket, n);
        }
    }

    /// Gives back spare capacity.
    pub fn shrink(&mut self) {
        self.buckets.shrink_to_fit();
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u16, u32)>()
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.buckets.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

/// Most distinct days a [`DaySet`] holds.
pub const MAX_DAYS: usize = 64;

/// The most recent distinct days (days since 1970-01-01) an identity was active on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySet {
    days: Vec<u32>,
}

impl DaySet {
    /// Records a day.
    #[inline]
    pub fn add(&mut self, day: u32) {
        if self.days.last() == Some(&day) {
            return;
        }
        if let Err(i) = self.days.binary_search(&day) {
            self.days.insert(i, day);
            if self.days.len() > MAX_DAYS {
                self.days.remove(0);
            }
        }
    }

    /// Distinct days held (at most [`MAX_DAYS`]).
    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// Whether no day is held.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Whether `day` is held.
    pub fn contains(&self, day: u32) -> bool {
        self.days.binary_search(&day).is_ok()
    }

    /// Days from the earliest to the latest held, inclusive.
    pub fn span(&self) -> u32 {
        match (self.days.first(), self.days.last()) {
            (Some(first), Some(last)) => last - first + 1,
            _ => 0,
        }
    }

    /// The union, keeping the latest [`MAX_DAYS`].
    pub fn merge(&mut self, other: &DaySet) {
        for &day in &other.days {
            if let Err(i) = self.days.binary_search(&day) {
                self.days.insert(i, day);
            }
        }
        let excess = self.days.len().saturating_sub(MAX_DAYS);
        self.days.drain(..excess);
    }

    /// Gives back spare capacity.
    pub fn shrink(&mut self) {
        self.days.shrink_to_fit();
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.days.capacity() * 4
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.days.len() <= MAX_DAYS && self.days.windows(2).all(|w| w[0] < w[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_map_is_exact_below_capacity_and_keeps_heavy_hitters_above() {
        let mut map = CountMap::default();
        for key in [5, 3, 5, 9, 5] {
            map.add(key, 1, 4);
        }
        assert_eq!(map.get(5), Some(3));
        map.add(5, 47, 4);
        assert_eq!(map.get(3), Some(1));
        assert_eq!(map.singletons(), 2);
        assert_eq!(map.total(), 52);
        for key in 100..200 {
            map.add(key, 1, 4);
        }
        assert_eq!(map.len(), 4);
        assert!(map.get(5).is_some(), "the heavy hitter survives: {map:?}");
        assert!(map.evicted() > 0);
    }

    #[test]
    fn histogram_buckets_are_monotone_and_tight() {
        let mut last = 0;
        for value in [0u64, 1, 2, 3, 4, 5, 7, 8, 100, 1_000, 1 << 40, u64::MAX] {
            let bucket = Histogram::bucket(value);
            assert!(bucket >= last, "{value}");
            last = bucket;
            assert!(Histogram::lower(bucket) <= value, "{value} bucket {bucket}");
            if value > 8 {
                let rep = Histogram::representative(bucket) as f64;
                assert!(
                    (rep - value as f64).abs() / value as f64 <= 0.25,
                    "{value} → {rep}"
                );
            }
        }
        assert_eq!(Histogram::lower(Histogram::bucket(1)), 1);
    }

    #[test]
    fn histogram_quantiles_and_mad() {
        let mut h = Histogram::default();
        for v in 1..=100u64 {
            h.add(v);
        }
        let median = h.quantile(0.5).unwrap();
        assert!((40..=60).contains(&median), "{median}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((85..=115).contains(&p99), "{p99}");
        let mad = h.mad().unwrap();
        assert!((15..=35).contains(&mad), "{mad}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn bloom_has_no_false_negatives() {
        let mut bloom = Bloom::default();
        for key in 1..500u64 {
            bloom.insert(crate::hash::mix(key));
        }
        assert!((1..500u64).all(|k| bloom.contains(crate::hash::mix(k))));
        let false_positives = (1_000..11_000u64)
            .filter(|&k| bloom.contains(crate::hash::mix(k)))
            .count();
        assert!(false_positives < 150, "{false_positives} of 10,000");
        assert!(!bloom.saturated());
    }

    #[test]
    fn day_set_keeps_the_latest_days() {
        let mut days = DaySet::default();
        for day in (0..100).rev() {
            days.add(day);
        }
        days.add(50);
        assert_eq!(days.len(), MAX_DAYS);
        assert!(days.contains(99) && !days.contains(0));
        assert_eq!(days.span(), 64);
    }
}
