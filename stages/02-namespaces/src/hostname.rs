//! The container's own hostname, in its own UTS namespace.

use std::io::Read;

/// A hostname the kernel and resolvers accept: at most 64 bytes, dot-separated
/// labels of letters, digits and inner hyphens (RFC 1123).
pub fn parse(name: &str) -> Result<String, String> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() > 64 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a valid hostname: use up to 64 letters, digits, '-' and '.', \
             not starting or ending with '-'"
        ));
    }
    Ok(name.to_string())
}

/// A random 12-hex-digit name, the way Docker names a container's host.
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(parse("web-1").unwrap(), "web-1");
        assert_eq!(parse("db.internal").unwrap(), "db.internal");
    }

    #[test]
    fn rejects_what_the_kernel_or_resolvers_would_not_take() {
        for bad in [
            "",
            "-web",
            "web-",
            "a..b",
            "has space",
            "ünicode",
            &"x".repeat(65),
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_names_are_twelve_hex_digits_and_differ() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(parse(&a).is_ok());
    }
}
