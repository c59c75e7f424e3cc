//! Content addresses: `sha256:<64 hex digits>`, and checking them while
//! bytes stream past.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use stage01_chroot::Error;

/// A sha256 content digest, as OCI writes it: `sha256:` + 64 lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: to_hex(&Sha256::digest(bytes)),
        }
    }

    /// The 64 hex digits, without `sha256:`: the blob's file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(text: &str) -> Result<Digest, Error> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| {
            Error::Other(format!(
                "{text:?} is not a sha256 digest (sha256:<64 hex digits>)"
            ))
        })?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::Other(format!(
                "{text:?} is not a sha256 digest: expected 64 lowercase hex digits"
            )));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ANCHOR: hashing_reader
/// A reader that hashes and counts what passes through it, so a blob is
/// verified while it streams to disk, with no second read.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The digest and size of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest {
                hex: to_hex(&self.hasher.finalize()),
            },
            self.bytes,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
// ANCHOR_END: hashing_reader

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_known_bytes() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
    }

    #[test]
    fn parse_and_print_round_trip() {
        let digest: Digest = EMPTY.parse().unwrap();
        assert_eq!(digest.to_string(), EMPTY);
        assert_eq!(digest.hex().len(), 64);
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in [
            "e3b0",
            "sha256:xyz",
            "sha512:00",
            &EMPTY.to_uppercase(),
            "sha256:../../etc/passwd",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_reader_hashes_what_streams_through() {
        let mut reader = HashingReader::new(&b"hello"[..]);
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        let (digest, size) = reader.finish();
        assert_eq!((digest, size), (Digest::of(b"hello"), 5));
    }
}
