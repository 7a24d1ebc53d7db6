//! Stable 64-bit keys for what profiles count: actions, resource shapes, networks, user-agent
//! families.
//!
//! Profiles are persisted and merged across processes and machines, so their keys must not
//! depend on a process's random hash seed or on a library version: this module's hash is
//! defined here (an FxHash-style word mix with a SplitMix64 finish) and never changes within a
//! baseline format version. Nothing here allocates.

/// The multiplier of the word mix (FxHash's).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Accumulates bytes into a stable 64-bit key.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher {
    state: u64,
    word: u64,
    filled: u32,
    len: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher::new()
    }
}

impl StableHasher {
    /// An empty hasher.
    pub const fn new() -> Self {
        StableHasher {
            state: 0,
            word: 0,
            filled: 0,
            len: 0,
        }
    }

    /// Adds one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.word |= u64::from(byte) << (self.filled * 8);
        self.filled += 1;
        self.len += 1;
        if self.filled == 8 {
            self.mix_word();
        }
    }

    /// Adds bytes (the same key as pushing them one by one, eight at a time where it can).
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while self.filled != 0 {
            let Some((&byte, tail)) = rest.split_first() else {
                return;
            };
            self.push(byte);
            rest = tail;
        }
        let mut chunks = rest.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word = u64::from_le_bytes(word);
            self.len += 8;
            self.mix_word();
        }
        for &byte in chunks.remainder() {
            self.push(byte);
        }
    }

    #[inline]
    fn mix_word(&mut self) {
        self.state = (self.state.rotate_left(5) ^ self.word).wrapping_mul(SEED);
        self.word = 0;
        self.filled = 0;
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key: never 0 (0 means "absent" in profiles).
    #[inline]
    pub fn finish(mut self) -> u64 {
        if self.filled > 0 {
            self.mix_word();
        }
        let key = mix(self.state ^ self.len.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        key.max(1)
    }
}

/// SplitMix64's finaliser: spreads every input bit over the output.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The key of a string.
#[inline]
pub fn key(text: &str) -> u64 {
    let mut hasher = StableHasher::new();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// The key of an ordered pair of keys (an action transition).
#[inline]
pub fn pair(first: u64, second: u64) -> u64 {
    mix(first.rotate_left(23) ^ second.wrapping_mul(SEED)).max(1)
}

/// A key made distinct per feature, for the one membership filter a profile keeps for all
/// features (an action and a resource with the same text must not vouch for each other).
#[inline]
pub fn tagged(tag: u8, key: u64) -> u64 {
    mix(key ^ (u64::from(tag) << 56 | 0x00a5_5a00_0000_0000)).max(1)
}

/// Most bytes of a resource that its shape looks at.
pub const SHAPE_BYTES: usize = 256;
/// Most `/`-separated segments a resource shape keeps.
pub const SHAPE_SEGMENTS: usize = 6;
/// Alphanumeric tokens at least this long are variable even without a digit (random ids).
const LONG_TOKEN: usize = 24;

/// The three keys of a resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceKeys {
    /// The resource verbatim: tells distinct targets apart (enumeration).
    pub exact: u64,
    /// Its shape: every alphanumeric token holding a digit (dates, counters, ids, UUID parts)
    /// and every token of 24 or more characters replaced by `#`, at most the first six
    /// `/`-segments and 256 bytes (case kept: resource names are case-sensitive). `daily/2026-03-03/part-0001.parquet` and
    /// `daily/2026-03-04/part-0002.parquet` share a shape; `archive/001.parquet` does not.
    pub shape: u64,
    /// Its container: the shape up to the first `/` (a bucket, a namespace, a repository
    /// owner, a top folder).
    pub container: u64,
}

/// Byte classes of resource shapes: neither a letter nor a digit, a letter, a digit.
const OTHER: u8 = 0;
const LETTER: u8 = 1;
const DIGIT: u8 = 2;
/// The class of each byte (ASCII letters and digits only: other bytes separate tokens).
const CLASS: [u8; 256] = {
    let mut class = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        if byte.is_ascii_digit() {
            class[b] = DIGIT;
        } else if byte.is_ascii_alphabetic() {
            class[b] = LETTER;
        }
        b += 1;
    }
    class
};

/// The keys of a resource, in one pass over its bytes.
pub fn resource(text: &str) -> ResourceKeys {
    let bytes = text.as_bytes();
    let mut exact = StableHasher::new();
    exact.write(bytes);
    // The shape's bytes are laid out first and hashed eight at a time: the same key as
    // pushing them one by one, at a fraction of the cost.
    let mut shaped = [0u8; SHAPE_BYTES];
    let mut len = 0usize;
    let mut container_len: Option<usize> = None;
    let mut segments = 0usize;
    let limited = &bytes[..bytes.len().min(SHAPE_BYTES)];
    let mut i = 0;
    while let Some(&byte) = limited.get(i) {
        if CLASS[usize::from(byte)] != OTHER {
            // A token: copied as it is scanned, and replaced by `#` once it turns out variable.
            let start = len;
            let mut digits = 0u8;
            while let Some(&byte) = limited.get(i) {
                let class = CLASS[usize::from(byte)];
                if class == OTHER {
                    break;
                }
                digits |= class;
                shaped[len] = byte;
                len += 1;
                i += 1;
            }
            if digits & DIGIT != 0 || len - start >= LONG_TOKEN {
                shaped[start] = b'#';
                len = start + 1;
            }
            continue;
        }
        if byte == b'/' {
            container_len.get_or_insert(len);
            segments += 1;
            if segments >= SHAPE_SEGMENTS {
                break;
            }
        }
        shaped[len] = byte;
        len += 1;
        i += 1;
    }
    // Never longer than its input: a token is kept or shrinks to one `#`.
    let mut shape = StableHasher::new();
    let container = container_len.map(|at| {
        shape.write(&shaped[..at]);
        shape.finish()
    });
    shape.write(&shaped[container_len.unwrap_or(0)..len]);
    let shape = shape.finish();
    ResourceKeys {
        exact: exact.finish(),
        shape,
        container: container.unwrap_or(shape),
    }
}

/// The network of a source address: an IPv4 /24, an IPv6 /64, or a host name as it is
/// (AWS services appear as `ecs.amazonaws.com`). Case-insensitive for names.
pub fn network(src_ip: &str) -> u64 {
    let text = src_ip.trim();
    let mut hasher = StableHasher::new();
    match text.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            hasher.push(4);
            hasher.write(&v4.octets()[..3]);
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                hasher.push(4);
                hasher.write(&v4.octets()[..3]);
            } else {
                hasher.push(6);
                hasher.write(&v6.octets()[..8]);
            }
        }
        Err(_) => {
            hasher.push(b'h');
            for &b in text.as_bytes() {
                hasher.push(b.to_ascii_lowercase());
            }
        }
    }
    hasher.finish()
}

/// Operating systems a user agent may name, in the words they are written with.
const PLATFORMS: [(&str, u8); 6] = [
    ("linux", b'l'),
    ("darwin", b'm'),
    ("mac os", b'm'),
    ("windows", b'w'),
    ("android", b'a'),
    ("iphone", b'i'),
];

/// The family of a user agent: its first product's name and major version, and the
/// operating system it names, if any. `aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0` and
/// `aws-cli/2.13.0 Python/3.11.4 Linux/5.10` share a family; `aws-cli/2.13.0 … Darwin/22.6.0`
/// and `Boto3/1.34.69 … os/linux` do not.
pub fn agent_family(user_agent: &str) -> u64 {
    let text = user_agent.trim().as_bytes();
    let mut hasher = StableHasher::new();
    let first = text
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let product = &text[..first];
    match product.iter().position(|&b| b == b'/') {
        Some(slash) => {
            for &b in &product[..slash] {
                hasher.push(b.to_ascii_lowercase());
            }
            hasher.push(b'/');
            for &b in product[slash + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
            {
                hasher.push(b);
            }
        }
        None => {
            for &b in product {
                hasher.push(b.to_ascii_lowercase());
            }
        }
    }
    hasher.push(0);
    if let Some(tag) = platform(text) {
        hasher.push(tag);
    }
    hasher.finish()
}

fn platform(text: &[u8]) -> Option<u8> {
    // Case-insensitive search without allocating: user agents are short.
    PLATFORMS.iter().find_map(|(word, tag)| {
        let word = word.as_bytes();
        text.windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
            .then_some(*tag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_never_zero() {
        // Pinned: a change here invalidates every persisted baseline (bump the format version).
        assert_eq!(key("s3:GetObject"), key("s3:GetObject"));
        assert_ne!(key("s3:GetObject"), key("s3:PutObject"));
        assert_ne!(key(""), 0);
        assert_eq!(
            key("iam:ListRoles"),
            0x7aaf_c4a8_bad6_ec63,
            "{:#x}",
            key("iam:ListRoles")
        );
        let mut split = StableHasher::new();
        split.write(b"iam:");
        split.write(b"ListRoles");
        assert_eq!(
            split.finish(),
            key("iam:ListRoles"),
            "chunking does not matter"
        );
    }

    #[test]
    fn shapes_mask_variable_tokens() {
        let a = resource("arn:aws:s3:::acme-exports/daily/2026-03-03/part-0001.parquet");
        let b = resource("arn:aws:s3:::acme-exports/daily/2026-03-04/part-0002.parquet");
        let c = resource("arn:aws:s3:::acme-exports/archive/001.parquet");
        let other = resource("arn:aws:s3:::acme-backups/full/00001.tar.zst");
        assert_eq!(a.shape, b.shape);
        assert_ne!(a.exact, b.exact);
        assert_ne!(a.shape, c.shape);
        assert_eq!(a.container, c.container);
        assert_ne!(a.container, other.container);
        let uuid = resource("k8s:ns/pods/4e2e6f3c-071c-42bd-980d-05fdbf299241");
        let uuid2 = resource("k8s:ns/pods/b0c541a5-1d07-4482-ae34-2906346d8dde");
        assert_eq!(uuid.shape, uuid2.shape);
        let plain = resource(".env");
        assert_eq!(
            plain.shape, plain.container,
            "no slash: the container is the shape"
        );
    }

    #[test]
    fn deep_resources_are_cut_to_their_first_segments() {
        let a = resource("r/a/b/c/d/e/f/g/h");
        let b = resource("r/a/b/c/d/e/x/y/z");
        assert_eq!(a.shape, b.shape);
        assert_ne!(a.exact, b.exact);
    }

    #[test]
    fn networks_group_addresses() {
        assert_eq!(network("52.39.110.218"), network("52.39.110.7"));
        assert_ne!(network("52.39.110.218"), network("52.39.111.218"));
        assert_eq!(network("2001:db8:1:2::1"), network("2001:db8:1:2:ffff::9"));
        assert_ne!(network("2001:db8:1:2::1"), network("2001:db8:1:3::1"));
        assert_eq!(network("::ffff:10.0.0.1"), network("10.0.0.200"));
        assert_eq!(network("ECS.amazonaws.com"), network("ecs.amazonaws.com"));
    }

    #[test]
    fn agent_families_keep_product_major_and_platform() {
        let linux = "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-azure exe/x86_64.ubuntu.22";
        let linux2 = "aws-cli/2.13.0 Python/3.11.4 Linux/5.10 exe/x86_64";
        let mac = "aws-cli/2.13.0 Python/3.11.4 Darwin/22.6.0 exe/x86_64 prompt/off";
        let boto = "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210";
        assert_eq!(agent_family(linux), agent_family(linux2));
        assert_ne!(agent_family(linux), agent_family(mac));
        assert_ne!(agent_family(linux), agent_family(boto));
        assert_eq!(
            agent_family("GitHub-Hookshot/8c3b5a1"),
            agent_family("github-hookshot/8")
        );
    }

    /// The definition of the shape key, a byte at a time: [`resource`] must give the same keys
    /// (they are persisted in baselines).
    fn reference(text: &str) -> ResourceKeys {
        let bytes = text.as_bytes();
        let mut shape = StableHasher::new();
        let mut container = None;
        let mut segments = 0;
        let limited = &bytes[..bytes.len().min(SHAPE_BYTES)];
        let mut i = 0;
        while i < limited.len() {
            if limited[i].is_ascii_alphanumeric() {
                let start = i;
                while i < limited.len() && limited[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                let token = &limited[start..i];
                if token.iter().any(u8::is_ascii_digit) || token.len() >= LONG_TOKEN {
                    shape.push(b'#');
                } else {
                    token.iter().for_each(|&b| shape.push(b));
                }
                continue;
            }
            if limited[i] == b'/' {
                container.get_or_insert(shape.finish());
                segments += 1;
                if segments >= SHAPE_SEGMENTS {
                    break;
                }
            }
            shape.push(limited[i]);
            i += 1;
        }
        let shape = shape.finish();
        ResourceKeys {
            exact: key(text),
            shape,
            container: container.unwrap_or(shape),
        }
    }

    #[test]
    fn resource_keys_are_pinned() {
        let keys = resource("arn:aws:s3:::acme-exports/daily/2026-03-03/part-0001.parquet");
        assert_eq!(
            keys,
            reference("arn:aws:s3:::acme-exports/daily/2026-03-03/part-0001.parquet")
        );
        // Pinned: a change here invalidates every persisted baseline (bump the format version).
        assert_eq!(keys.shape, 0x7285_775b_0d07_d46e, "{:#x}", keys.shape);
        assert_eq!(
            keys.container, 0x466e_740a_2656_72ca,
            "{:#x}",
            keys.container
        );
    }

    proptest::proptest! {
        #[test]
        fn resource_keys_follow_their_definition(text in "[a-zA-Z0-9:/._-]{0,300}") {
            proptest::prop_assert_eq!(resource(&text), reference(&text));
        }
    }
}
