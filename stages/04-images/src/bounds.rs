//! What an image may cost: bounds on memory and disk.
//!
//! An image is written by a stranger, and digests only prove that we got
//! what its author meant: a hostile author means harm. Two cheap attacks
//! need no bug at all:
//!
//! - **A huge document.** Manifests, configs and indexes are read into
//!   memory to be parsed. A descriptor that says `"size": 200` for a file
//!   of 3 GiB, or says 3 GiB outright, would make us allocate 3 GiB. So we
//!   never read more than a descriptor declares, and refuse any JSON
//!   document over [`MAX_DOCUMENT_SIZE`] whatever it declares.
//! - **A decompression bomb.** A gzip layer of 10 MB can hold 10 GiB of
//!   zeros. Its digest is fine; unpacking it fills the disk. So one layer may
//!   unpack to at most [`max_layer_size`] bytes, counted by a [`LayerBudget`]
//!   as the layer is read and written.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;

use stage01_chroot::Error;
use stage03_cgroups::limits::{format_size, parse_size};

use crate::digest::{Digest, HashingReader};

// ANCHOR: document_limit
/// The largest manifest, config or index we read, whatever its descriptor
/// says. containerd uses the same 4 MiB; real ones are a few KiB.
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// Refuse a descriptor for a JSON document (`what`: "manifest", "config",
/// "index") that declares more than [`MAX_DOCUMENT_SIZE`], before reading
/// a byte of it.
pub fn check_document_size(what: &str, digest: &Digest, declared: u64) -> Result<(), Error> {
    if declared <= MAX_DOCUMENT_SIZE {
        return Ok(());
    }
    Err(Error::Other(format!(
        "the {what} {digest} declares {} ({declared} bytes), but no {what} may be larger \
         than {}; refusing the image (it is malformed or hostile)",
        format_size(declared),
        format_size(MAX_DOCUMENT_SIZE)
    )))
}

/// Read the document `digest` from `source` (named `origin` in errors):
/// exactly its `declared` size and not one byte more, checked against the
/// digest. Memory use is bounded by the declaration, which is itself
/// bounded by [`check_document_size`].
pub fn read_document(
    what: &str,
    digest: &Digest,
    declared: u64,
    source: impl Read,
    origin: &Path,
) -> Result<Vec<u8>, Error> {
    check_document_size(what, digest, declared)?;
    // One byte more than declared: enough to tell "too long" apart.
    let mut reader = HashingReader::new(source.take(declared + 1));
    let mut bytes = Vec::with_capacity(declared as usize);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", origin, e))?;
    let (actual, size) = reader.finish();
    if size > declared {
        return Err(Error::Other(format!(
            "the {what} {digest} at {} is larger than the {declared} bytes its descriptor \
             declares; refusing the image (it is malformed or hostile)",
            origin.display()
        )));
    }
    if size < declared || actual != *digest {
        return Err(Error::Other(format!(
            "the {what} at {} is not {digest} ({declared} bytes): it is {actual} ({size} \
             bytes); the image is corrupt or was tampered with",
            origin.display()
        )));
    }
    Ok(bytes)
}

/// Read a small file that no descriptor describes (an archive's
/// `manifest.json` or config, a layout's `index.json`), refusing one
/// larger than [`MAX_DOCUMENT_SIZE`].
pub fn read_small_file(what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(Error::Other(format!(
            "{what} {} is larger than {}, more than any real one; refusing it (it is \
             malformed or hostile)",
            path.display(),
            format_size(MAX_DOCUMENT_SIZE)
        )));
    }
    Ok(bytes)
}
// ANCHOR_END: document_limit

// ANCHOR: layer_limit
/// The variable that sets the most one layer may unpack to, e.g. `100g`.
pub const MAX_LAYER_SIZE_VAR: &str = "BERTH_MAX_LAYER_SIZE";

/// The default: far above real layers (a few GiB at most, even for images
/// with CUDA or a whole toolchain), far below a disk full.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 32 << 30;

/// The most one layer may unpack to: `$BERTH_MAX_LAYER_SIZE` if set (in
/// the sizes `--memory` takes: `512m`, `100g`, bytes), else the default.
/// An environment variable rather than a flag, so that every command that
/// may unpack (`run`, `create`, `build`...) in every berth binary obeys it.
pub fn max_layer_size() -> Result<u64, Error> {
    let Some(value) = std::env::var_os(MAX_LAYER_SIZE_VAR) else {
        return Ok(DEFAULT_MAX_LAYER_SIZE);
    };
    let text = value.to_string_lossy();
    match parse_size(&text) {
        Ok(0) => Err(Error::Other(format!(
            "{MAX_LAYER_SIZE_VAR}={text:?}: the limit must be above zero (e.g. 100g)"
        ))),
        Ok(bytes) => Ok(bytes),
        Err(why) => Err(Error::Other(format!("{MAX_LAYER_SIZE_VAR}: {why}"))),
    }
}

/// What one layer has cost so far, against its limit. Two counts, each
/// held to the limit: the bytes of the uncompressed tar (which bounds the
/// number of entries too), and the bytes written into files (a sparse tar
/// entry writes more than the tar holds).
#[derive(Debug)]
pub struct LayerBudget {
    limit: u64,
    read: Cell<u64>,
    written: Cell<u64>,
    exceeded: Cell<bool>,
}

impl LayerBudget {
    pub fn new(limit: u64) -> LayerBudget {
        LayerBudget {
            limit,
            read: Cell::new(0),
            written: Cell::new(0),
            exceeded: Cell::new(false),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether the layer went over the limit: the unpack stopped because of
    /// it, whatever error it reported on the way out.
    pub fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    /// Wrap the uncompressed tar stream: reading past the limit fails.
    pub fn reader<R: Read>(&self, inner: R) -> BudgetReader<'_, R> {
        BudgetReader {
            inner,
            budget: self,
        }
    }

    /// Copy one file's data, stopping with an error as soon as the layer's
    /// files would hold more than the limit. Returns the bytes copied.
    pub fn copy_file_data(
        &self,
        data: &mut impl Read,
        file: &mut impl io::Write,
    ) -> io::Result<u64> {
        let allowed = self.limit.saturating_sub(self.written.get());
        let copied = io::copy(&mut data.take(allowed.saturating_add(1)), file)?;
        self.written.set(self.written.get() + copied);
        if copied > allowed {
            return Err(self.over_limit());
        }
        Ok(copied)
    }

    fn over_limit(&self) -> io::Error {
        self.exceeded.set(true);
        io::Error::other(format!(
            "the layer unpacks to more than the limit of {} ({MAX_LAYER_SIZE_VAR})",
            format_size(self.limit)
        ))
    }
}

/// The tar stream of a layer, failing once more than the budget's limit
/// has been read from it.
pub struct BudgetReader<'a, R> {
    inner: R,
    budget: &'a LayerBudget,
}

impl<R: Read> Read for BudgetReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.budget.read.get() + n as u64;
        self.budget.read.set(total);
        if total > self.budget.limit {
            return Err(self.budget.over_limit());
        }
        Ok(n)
    }
}
// ANCHOR_END: layer_limit

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_to_their_declared_size_and_no_further() {
        let text = b"{\"schemaVersion\":2}";
        let digest = Digest::of(text);
        let origin = Path::new("blob");
        let read =
            |source: &[u8], declared| read_document("manifest", &digest, declared, source, origin);
        assert_eq!(read(text, text.len() as u64).unwrap(), text);
        let longer = [&text[..], b"   "].concat();
        let err = read(&longer, text.len() as u64).unwrap_err().to_string();
        assert!(err.contains("larger than the 19 bytes"), "{err}");
        let err = read(&text[..5], text.len() as u64).unwrap_err().to_string();
        assert!(err.contains("tampered"), "{err}");
        let err = read(text, 3 << 30).unwrap_err().to_string();
        assert!(err.contains("declares 3 GiB"), "{err}");
        assert!(err.contains("4 MiB"), "{err}");
    }

    #[test]
    fn the_default_is_what_the_help_says() {
        // stage04-images --help spells the default as "32g".
        assert_eq!(parse_size("32g"), Ok(DEFAULT_MAX_LAYER_SIZE));
    }

    #[test]
    fn a_budget_stops_reads_and_writes_past_its_limit() {
        let budget = LayerBudget::new(10);
        let mut reader = budget.reader(&[0u8; 11][..]);
        let mut sink = Vec::new();
        assert!(io::copy(&mut reader, &mut sink).is_err());
        assert!(budget.exceeded());

        let budget = LayerBudget::new(10);
        let mut out = Vec::new();
        assert_eq!(
            budget.copy_file_data(&mut &[1u8; 6][..], &mut out).unwrap(),
            6
        );
        assert!(!budget.exceeded());
        assert!(budget.copy_file_data(&mut &[1u8; 6][..], &mut out).is_err());
        assert!(budget.exceeded());
        assert!(out.len() <= 11, "wrote {} bytes", out.len());
    }
}
