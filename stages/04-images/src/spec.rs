//! The JSON documents an image is made of, as the OCI image spec and
//! Docker's "schema 2" write them. Only the fields Berth uses are here;
//! unknown fields are ignored when reading, so newer images still parse.
//!
//! How they fit together, from the top:
//! - an [`Index`] (Docker: "manifest list") lists one manifest per platform
//!   (linux/amd64, linux/arm64, ...);
//! - a [`Manifest`] is one image: a config blob plus an ordered list of
//!   layer blobs;
//! - the [`ImageConfig`] says how to run it (command, environment, user)
//!   and lists the digests of the *uncompressed* layers (`diff_ids`);
//! - every arrow between them is a [`Descriptor`]: media type, digest and
//!   size of the blob pointed at, so each step can be verified.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image manifest: one image for one platform.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index: a list of manifests, usually one per platform.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed layer tar.
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed layer tar: what almost every image uses.
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed layer tar.
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest: same shape as [`MEDIA_TYPE_OCI_MANIFEST`].
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list: same shape as [`MEDIA_TYPE_OCI_INDEX`].
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config: same shape as [`MEDIA_TYPE_OCI_CONFIG`].
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's gzip layer: same bytes as [`MEDIA_TYPE_OCI_LAYER_GZIP`].
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The annotation that names a manifest in an image layout's index.json:
/// this is how tags are stored (see `store`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether `media_type` is a list of manifests (OCI index or Docker list).
pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is a single-image manifest (OCI or Docker).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

// ANCHOR: descriptor
/// A typed, verifiable pointer to a blob: what it is, its sha256, its size.
/// Knowing the size up front lets us refuse a blob that grows too long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Set on the entries of an index, to say which platform each is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}
// ANCHOR_END: descriptor

/// An OS and CPU, in Go's names (`linux`, `amd64`, `arm64`), since
/// registries and images use those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    /// CPU variant, e.g. `v7` for 32-bit arm, `v8` for arm64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// One image: its config blob and its layers, bottom layer first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2 for both OCI and Docker schema 2.
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A list of manifests. From a registry: one per platform. As an image
/// layout's index.json: every image in the store, tagged by annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `default` because an empty layout may write `"manifests": null`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

// ANCHOR: pick
impl Index {
    /// The manifest for `platform`: same OS and architecture, and the same
    /// variant if the index offers one, else any variant.
    pub fn pick(&self, platform: &Platform) -> Option<&Descriptor> {
        let candidates = || {
            self.manifests.iter().filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
            })
        };
        candidates()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| same_variant(p, platform))
            })
            .or_else(|| candidates().next())
    }
}
// ANCHOR_END: pick

/// arm64 images often omit the variant, meaning `v8`: treat both as equal.
fn same_variant(a: &Platform, b: &Platform) -> bool {
    let normal = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", None) => Some("v8".to_string()),
        (_, variant) => variant.map(str::to_string),
    };
    normal(a) == normal(b)
}

/// The image's config: how to run it, and which uncompressed layers it is
/// made of (so unpacked layers can be checked and cached by `diff_ids`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    /// When the image was made (RFC 3339), if its maker says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// How it was made, a step at a time (`docker history` shows it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// One step in an image's making: what ran, and whether it made a layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The step changed only the config (ENV, CMD...), no files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// Defaults for a container, in Docker's PascalCase JSON names. Docker
/// writes `null` for empty lists, so every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `KEY=value` strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `"80/tcp": {}`: the values are always empty objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `"/data": {}`: directories that get a volume of their own in every
    /// container (a Dockerfile's VOLUME); the values are empty objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// A Dockerfile's HEALTHCHECK, in Docker's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// A Dockerfile's STOPSIGNAL, e.g. `SIGQUIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// A Dockerfile's ONBUILD lines, kept for images built on this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// A Dockerfile's SHELL: the shell form's shell in later builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// Docker's `Healthcheck`: `Test` is `["NONE"]`, `["CMD", prog, args...]`
/// or `["CMD-SHELL", command]`; times are in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
}

/// `type` is always `layers`; `diff_ids` are the sha256 of each layer tar
/// *after* decompression, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    pub r#type: String,
    pub diff_ids: Vec<Digest>,
}

impl Platform {
    /// `os/arch[/variant]` as `--platform` takes it (`linux/arm64`,
    /// `linux/arm/v7`); Rust's and uname's names (`x86_64`, `aarch64`) are
    /// turned into Go's, which images use.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(variant.to_string())),
            _ => {
                return Err(format!(
                    "{text:?} is not a platform: use OS/ARCH[/VARIANT], e.g. linux/arm64"
                ));
            }
        };
        if os.is_empty() || arch.is_empty() {
            return Err(format!(
                "{text:?} is not a platform: use OS/ARCH[/VARIANT], e.g. linux/arm64"
            ));
        }
        Ok(Platform {
            os: os.to_lowercase(),
            architecture: go_arch(&arch.to_lowercase()).to_string(),
            variant,
        })
    }

    /// Whether an image config's os, architecture and variant are this platform.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let other = Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(String::from),
        };
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || same_variant(self, &other))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// This machine's platform in Go's names, to pick from an index.
pub fn host_platform() -> Platform {
    Platform {
        architecture: go_arch(std::env::consts::ARCH).to_string(),
        os: "linux".to_string(),
        variant: host_variant(),
    }
}

/// Rust's architecture names -> Go's (which images use).
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" | "x86-64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "loongarch64" => "loong64",
        // arm, riscv64, s390x, powerpc64 (big endian) keep their names.
        other => other,
    }
}

/// 32-bit arm images come in variants (v6, v7); other CPUs need none.
fn host_variant() -> Option<String> {
    if cfg!(target_arch = "arm") {
        Some(
            if cfg!(target_feature = "v7") {
                "v7"
            } else {
                "v6"
            }
            .to_string(),
        )
    } else {
        None
    }
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    #[test]
    fn platforms_parse_with_go_names() {
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            (arm.os.as_str(), arm.architecture.as_str()),
            ("linux", "arm64")
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/").is_err());
        assert!(arm.matches("linux", "arm64", Some("v8")));
        assert!(!arm.matches("linux", "amd64", None));
    }

    #[test]
    fn a_docker_manifest_parses() {
        let json = format!(
            r#"{{"schemaVersion":2,
               "mediaType":"{MEDIA_TYPE_DOCKER_MANIFEST}",
               "config":{{"mediaType":"{MEDIA_TYPE_DOCKER_CONFIG}","size":1469,"digest":"{D1}"}},
               "layers":[{{"mediaType":"{MEDIA_TYPE_DOCKER_LAYER_GZIP}","size":2150,"digest":"{D2}"}}],
               "somethingNew":true}}"#
        );
        let m: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(m.schema_version, 2);
        assert!(is_manifest(m.media_type.as_deref().unwrap()));
        assert_eq!(m.config.digest.to_string(), D1);
        assert_eq!(m.layers[0].size, 2150);
        assert_eq!(m.layers[0].media_type, MEDIA_TYPE_DOCKER_LAYER_GZIP);
    }

    #[test]
    fn none_fields_are_left_out_when_writing() {
        let d = Descriptor {
            media_type: MEDIA_TYPE_OCI_MANIFEST.to_string(),
            digest: D1.parse().unwrap(),
            size: 7,
            annotations: None,
            platform: None,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"mediaType":"{MEDIA_TYPE_OCI_MANIFEST}","digest":"{D1}","size":7}}"#)
        );
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: Some(ContainerConfig {
                cmd: Some(vec!["sh".into()]),
                ..Default::default()
            }),
            rootfs: RootFs {
                r#type: "layers".into(),
                diff_ids: vec![D3.parse().unwrap()],
            },
            created: None,
            history: Vec::new(),
        };
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(value["config"], serde_json::json!({"Cmd": ["sh"]}));
        assert_eq!(value["rootfs"]["type"], "layers");
        assert_eq!(value["rootfs"]["diff_ids"][0], D3);
    }

    #[test]
    fn a_docker_config_parses_with_nulls_and_pascal_case() {
        let json = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
               "config":{{"User":"1000","Env":["PATH=/bin"],"Entrypoint":null,
                 "Cmd":["sh"],"WorkingDir":"/w","ExposedPorts":{{"80/tcp":{{}}}},
                 "Labels":{{"a":"b"}},"Volumes":null}},
               "rootfs":{{"type":"layers","diff_ids":["{D1}","{D2}"]}},
               "history":[]}}"#
        );
        let c: ImageConfig = serde_json::from_str(&json).unwrap();
        let cc = c.config.unwrap();
        assert_eq!(cc.user.as_deref(), Some("1000"));
        assert_eq!(cc.env.unwrap(), ["PATH=/bin"]);
        assert_eq!(cc.entrypoint, None);
        assert_eq!(cc.cmd.unwrap(), ["sh"]);
        assert_eq!(cc.working_dir.as_deref(), Some("/w"));
        assert!(cc.exposed_ports.unwrap().contains_key("80/tcp"));
        assert_eq!(cc.labels.unwrap()["a"], "b");
        assert_eq!(c.rootfs.r#type, "layers");
        assert_eq!(c.rootfs.diff_ids.len(), 2);
    }

    fn entry(digest: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: MEDIA_TYPE_OCI_MANIFEST.into(),
            digest: digest.parse().unwrap(),
            size: 1,
            annotations: None,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    fn platform(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn pick_matches_os_arch_and_prefers_the_variant() {
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
            manifests: vec![
                entry(D1, "arm", Some("v6")),
                entry(D2, "arm", Some("v7")),
                entry(D3, "amd64", None),
            ],
            annotations: None,
        };
        let pick = |p: Platform| index.pick(&p).map(|d| d.digest.to_string());
        assert_eq!(pick(platform("amd64", None)).as_deref(), Some(D3));
        assert_eq!(pick(platform("arm", Some("v7"))).as_deref(), Some(D2));
        assert_eq!(pick(platform("arm", Some("v6"))).as_deref(), Some(D1));
        // No exact variant: any arm will do.
        assert_eq!(pick(platform("arm", Some("v5"))).as_deref(), Some(D1));
        assert_eq!(pick(platform("s390x", None)), None);
        let windows = Platform {
            os: "windows".into(),
            ..platform("amd64", None)
        };
        assert_eq!(pick(windows), None);
    }

    #[test]
    fn arm64_without_variant_means_v8() {
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                entry(D1, "arm64", Some("v9")),
                entry(D2, "arm64", Some("v8")),
            ],
            annotations: None,
        };
        let picked = index.pick(&platform("arm64", None)).unwrap();
        assert_eq!(picked.digest.to_string(), D2);
    }

    #[test]
    fn an_index_with_attestations_parses_and_skips_them() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_OCI_INDEX}","manifests":[
                {{"mediaType":"{MEDIA_TYPE_OCI_MANIFEST}","digest":"{D1}","size":1,
                  "platform":{{"architecture":"unknown","os":"unknown"}},
                  "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}},
                {{"mediaType":"{MEDIA_TYPE_OCI_MANIFEST}","digest":"{D2}","size":1,
                  "platform":{{"architecture":"amd64","os":"linux","os.version":"x"}}}}]}}"#
        );
        let index: Index = serde_json::from_str(&json).unwrap();
        assert!(is_index(index.media_type.as_deref().unwrap()));
        let picked = index.pick(&platform("amd64", None)).unwrap();
        assert_eq!(picked.digest.to_string(), D2);
        let empty: Index = serde_json::from_str(r#"{"schemaVersion":2,"manifests":null}"#).unwrap();
        assert!(empty.manifests.is_empty());
    }

    #[test]
    fn media_type_helpers() {
        assert!(is_index(MEDIA_TYPE_OCI_INDEX) && is_index(MEDIA_TYPE_DOCKER_MANIFEST_LIST));
        assert!(is_manifest(MEDIA_TYPE_OCI_MANIFEST) && is_manifest(MEDIA_TYPE_DOCKER_MANIFEST));
        assert!(!is_index(MEDIA_TYPE_OCI_MANIFEST) && !is_manifest(MEDIA_TYPE_OCI_INDEX));
        assert!(!is_manifest(MEDIA_TYPE_OCI_CONFIG) && !is_manifest(MEDIA_TYPE_OCI_LAYER_GZIP));
    }

    #[test]
    fn host_platform_uses_go_names() {
        let host = host_platform();
        assert_eq!(host.os, "linux");
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
    }
}
