//! Stage 04 of Berth: OCI images.
//!
//! Until now a container's files came from a directory we made by hand. Real
//! containers start from an *image*: a stack of file system layers plus a
//! config (command, environment, working directory), published in a
//! registry and addressed by the sha256 digests of their contents.
//!
//! The order things happen in: parse a [`reference`]; the [`registry`]
//! client fetches the manifest and blobs, verifying each [`digest`]; the
//! [`store`] keeps them as an OCI image layout; [`unpack`] extracts each
//! layer once, safely, into the layer cache; [`overlay`] stacks the layers
//! under a fresh writable directory; [`run`] starts a stage 03 container on
//! it with the image's config. [`bounds`] keeps what a hostile image can
//! cost in memory and disk within limits.

pub mod auth;
pub mod bounds;
pub mod cli;
pub mod digest;
pub mod image;
pub mod layers;
pub mod load;
pub mod overlay;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod root;
pub mod spec;
pub mod store;
pub mod unpack;
