//! `berth build`: a Dockerfile into an image in the store.
//!
//! An image is its base image's layers plus one layer per step that changes
//! files, and a config. So the build keeps a *state* (the layers so far and
//! the config so far) and walks the Dockerfile: FROM sets the state to an
//! image from the store; ENV, WORKDIR, USER, CMD and friends change the
//! config; RUN runs a container on the layers so far and turns what it
//! changed (the overlay's upper directory) into a new layer; COPY and ADD
//! make a layer from the build context. At the end the new layers, the
//! config and a manifest go into the store under the tag.
//!
//! RUN is slow, so its layers are cached: the key is a hash of everything
//! that led to the step (the base image, every step before it and this
//! one), and a hit reuses the layer.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stage01_chroot::Error;
use stage02_namespaces::hostname;
use stage04_images::digest::Digest;
use stage04_images::image::{self, Image, Overrides};
use stage04_images::layers;
use stage04_images::load::{put_file, put_manifest};
use stage04_images::overlay::{ContainerDirs, overlay_mount};
use stage04_images::reference::Reference;
use stage04_images::spec::{self, ContainerConfig, Descriptor, ImageConfig, Manifest};
use stage04_images::store::{Store, write_atomic};

use crate::Engine;
use crate::bundle::{self, EngineContainer};
use crate::dockerfile::{self, Instruction, Step, substitute};
use crate::layer::{self, LayerFile};
use crate::record::Record;
use crate::{harden, runtime};

/// What `berth build` was asked for.
pub struct BuildOptions {
    /// The directory COPY and ADD read from.
    pub context: PathBuf,
    /// Default: `Dockerfile` in the context.
    pub dockerfile: Option<PathBuf>,
    pub tag: String,
    /// `--build-arg NAME=VALUE`, for the Dockerfile's ARGs.
    pub build_args: BTreeMap<String, String>,
    /// Run every RUN step again, even with a cached layer.
    pub no_cache: bool,
}

/// A layer of the image being built.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BuiltLayer {
    descriptor: Descriptor,
    diff_id: Digest,
    /// Made by this build and not yet in the store.
    #[serde(skip)]
    file: Option<PathBuf>,
}

/// The image so far.
struct State {
    config: ImageConfig,
    layers: Vec<BuiltLayer>,
    /// The cache key of everything so far.
    chain: Digest,
    /// Whether this Dockerfile set CMD (an ENTRYPOINT then keeps it).
    cmd_set_here: bool,
}

// ANCHOR: build
/// Build the Dockerfile in `options.context`; returns the full tag.
pub fn build(engine: &Engine, options: BuildOptions) -> Result<String, Error> {
    // Everything that can be checked first.
    let tag: Reference = options.tag.parse()?;
    let context = std::fs::canonicalize(&options.context)
        .map_err(|e| Error::io("open the build context", &options.context, e))?;
    let dockerfile = options
        .dockerfile
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    let text =
        std::fs::read_to_string(&dockerfile).map_err(|e| Error::io("read", &dockerfile, e))?;
    let steps = dockerfile::parse(&text)?;

    let store = engine.root.store()?;
    let work = WorkDir::create(&engine.root.dir().join("build"))?;
    let mut vars = BTreeMap::new(); // ARG and ENV values, for $substitution
    let mut build_env = Vec::new(); // ARG values, seen by RUN only
    let mut state: Option<State> = None;
    for (n, step) in steps.iter().enumerate() {
        println!("STEP {}/{}: {}", n + 1, steps.len(), step.text);
        match (&step.instruction, state.as_mut()) {
            (Instruction::From(name), _) => {
                let image = Image::open(&store, &substitute(name, &vars))?;
                state = Some(State::from_image(image));
            }
            (Instruction::Arg { name, default }, state) => {
                let value = options.build_args.get(name).or(default.as_ref());
                if let Some(value) = value {
                    vars.insert(name.clone(), value.clone());
                    build_env.push(format!("{name}={value}"));
                }
                if let Some(state) = state {
                    state.advance(&format!(
                        "ARG {name}={}",
                        value.cloned().unwrap_or_default()
                    ));
                }
            }
            (Instruction::Run(command), Some(state)) => {
                run_step(
                    engine,
                    &store,
                    &work,
                    state,
                    step,
                    command,
                    &build_env,
                    options.no_cache,
                )?;
            }
            (
                Instruction::Copy { sources, dest } | Instruction::Add { sources, dest },
                Some(state),
            ) => {
                let unpack = matches!(step.instruction, Instruction::Add { .. });
                copy_step(
                    &work,
                    state,
                    &context,
                    sources,
                    &substitute(dest, &vars),
                    unpack,
                )?;
            }
            (instruction, Some(state)) => {
                configure(state, instruction, &mut vars);
                state.advance(&substitute(&step.text, &vars));
            }
            (_, None) => unreachable!("parse puts FROM before every other step"),
        }
    }
    let state = state.ok_or_else(|| Error::Other("the Dockerfile has no FROM".into()))?;
    let digest = commit(engine, &store, &work, &state, &tag.to_string())?;
    println!("Successfully tagged {tag}");
    println!("Digest: {digest}");
    Ok(tag.to_string())
}
// ANCHOR_END: build

/// `berth commit`: a container's writable layer on top of its image, as
/// the image `tag`. Like Docker's, the new image runs what the container
/// ran (its command line's Cmd, Entrypoint, Env, WorkingDir, User), and
/// `changes` are Dockerfile lines (`CMD ["sh"]`, `ENV A=b`...) applied on
/// top. A running container is frozen while its files are read.
pub fn commit_container(
    engine: &Engine,
    record: &Record,
    tag: &str,
    changes: &[String],
) -> Result<Digest, Error> {
    let tag: Reference = tag.parse()?;
    let changes = parse_changes(changes)?;
    let store = engine.root.store()?;
    let mut state = State::from_image(Image::open(&store, &record.spec.image)?);
    apply_run_options(&mut state, &record.spec.overrides());
    let mut vars = BTreeMap::new();
    for change in &changes {
        configure(&mut state, change, &mut vars);
    }
    let work = WorkDir::create(&engine.root.dir().join("build"))?;
    let out = work.dir.join("layer.tar.gz");
    // The files berth binds over leave empty mount points: not the container's.
    let skip: Vec<PathBuf> = stage05_networks::hosts::NameFiles::in_dir(Path::new(""))
        .binds()
        .into_iter()
        .map(|(_, inside)| inside.strip_prefix("/").unwrap_or(&inside).to_path_buf())
        .collect();
    let upper = engine.containers.dirs(&record.id).upper;
    let frozen = crate::commands::state_of(engine, record) == "running"
        && runtime::pause(engine.root.dir(), &record.id, true).is_ok();
    let made = layer::from_upper_dir(&upper, &out, &skip);
    if frozen {
        runtime::pause(engine.root.dir(), &record.id, false)?;
    }
    let made = made?;
    let descriptor = describe(&made)?;
    state.push_layer(descriptor, made.diff_id, Some(made.gzipped));
    commit(engine, &store, &work, &state, &tag.to_string())
}

/// `-c` lines: the Dockerfile instructions that change only the config.
fn parse_changes(changes: &[String]) -> Result<Vec<Instruction>, Error> {
    let text = changes.join("\n");
    let steps = dockerfile::parse(&format!("FROM scratch\n{text}\n"))?;
    steps
        .into_iter()
        .skip(1)
        .map(|step| match step.instruction {
            Instruction::Run(_)
            | Instruction::Copy { .. }
            | Instruction::Add { .. }
            | Instruction::From(_)
            | Instruction::Arg { .. } => Err(Error::Other(format!(
                "commit -c {:?}: only ENV, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE and LABEL \
                 change an image's config",
                step.text
            ))),
            instruction => Ok(instruction),
        })
        .collect()
}

/// What `berth run`'s command line changed, into the image's config.
fn apply_run_options(state: &mut State, overrides: &Overrides) {
    let config = state.container_config();
    if let Some(entrypoint) = &overrides.entrypoint {
        config.entrypoint = Some(vec![entrypoint.clone()]);
        config.cmd = None;
    }
    if !overrides.command.is_empty() {
        let words = overrides.command.iter();
        config.cmd = Some(words.map(|w| w.to_string_lossy().into_owned()).collect());
    }
    for pair in overrides.env.iter().filter(|e| e.contains('=')) {
        let key = pair.split('=').next().unwrap_or_default();
        let env = config.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(pair.clone());
    }
    if let Some(dir) = &overrides.workdir {
        config.working_dir = Some(dir.display().to_string());
    }
    if let Some(user) = &overrides.user {
        config.user = Some(user.clone());
    }
}

impl State {
    fn from_image(image: Image) -> State {
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
            .map(|(descriptor, diff_id)| BuiltLayer {
                descriptor: descriptor.clone(),
                diff_id: diff_id.clone(),
                file: None,
            })
            .collect();
        State {
            config: image.config,
            layers,
            chain: image.descriptor.digest,
            cmd_set_here: false,
        }
    }

    /// The next cache key: this step on top of everything before it.
    fn advance(&mut self, step: &str) {
        self.chain = Digest::of(format!("{}\n{step}", self.chain).as_bytes());
    }

    fn container_config(&mut self) -> &mut ContainerConfig {
        self.config
            .config
            .get_or_insert_with(ContainerConfig::default)
    }

    fn push_layer(&mut self, descriptor: Descriptor, diff_id: Digest, file: Option<PathBuf>) {
        self.config.rootfs.diff_ids.push(diff_id.clone());
        self.layers.push(BuiltLayer {
            descriptor,
            diff_id,
            file,
        });
    }

    /// The layers so far, unpacked in the cache, bottom first.
    fn unpacked(&self, store: &Store, cache: &Path) -> Result<Vec<PathBuf>, Error> {
        self.layers
            .iter()
            .map(|layer| {
                let blob = layer
                    .file
                    .clone()
                    .unwrap_or_else(|| store.blob_path(&layer.descriptor.digest));
                let file = File::open(&blob).map_err(|e| Error::io("open layer", &blob, e))?;
                layers::ensure_unpacked(cache, &layer.diff_id, &layer.descriptor.media_type, file)
            })
            .collect()
    }
}

/// ENV, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL, VOLUME: the config
/// changes.
fn configure(state: &mut State, instruction: &Instruction, vars: &mut BTreeMap<String, String>) {
    let cmd_set_here = state.cmd_set_here;
    let config = state.container_config();
    match instruction {
        Instruction::Env(pairs) => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (name, value) in pairs {
                let value = substitute(value, vars);
                env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(name.as_str()));
                env.push(format!("{name}={value}"));
                vars.insert(name.clone(), value);
            }
        }
        Instruction::Workdir(dir) => {
            let dir = substitute(dir, vars);
            let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
            config.working_dir = Some(Path::new(&base).join(dir).to_string_lossy().into_owned());
        }
        Instruction::User(user) => config.user = Some(substitute(user, vars)),
        Instruction::Cmd(command) => {
            config.cmd = Some(command.clone());
            state.cmd_set_here = true;
        }
        Instruction::Entrypoint(command) => {
            config.entrypoint = Some(command.clone());
            if !cmd_set_here {
                config.cmd = None; // an inherited CMD was meant for the old entrypoint
            }
        }
        Instruction::Expose(ports) => {
            let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for port in ports {
                let port = substitute(port, vars);
                let port = match port.contains('/') {
                    true => port,
                    false => format!("{port}/tcp"),
                };
                exposed.insert(port, serde_json::json!({}));
            }
        }
        Instruction::Label(pairs) => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (key, value) in pairs {
                labels.insert(substitute(key, vars), substitute(value, vars));
            }
        }
        Instruction::Volume(dirs) => {
            // Checked when a container is made from the image (`volume`).
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for dir in dirs {
                volumes.insert(substitute(dir, vars), serde_json::json!({}));
            }
        }
        Instruction::From(_)
        | Instruction::Arg { .. }
        | Instruction::Run(_)
        | Instruction::Copy { .. }
        | Instruction::Add { .. } => {}
    }
}

// ANCHOR: run_step
/// RUN: the command in a container on the layers so far; its changes are
/// the new layer. A cached layer is used instead when the key matches.
#[allow(clippy::too_many_arguments)]
fn run_step(
    engine: &Engine,
    store: &Store,
    work: &WorkDir,
    state: &mut State,
    step: &Step,
    command: &[String],
    build_env: &[String],
    no_cache: bool,
) -> Result<(), Error> {
    state.advance(&format!("RUN {command:?} {build_env:?}"));
    let cache = BuildCache::new(engine);
    if !no_cache && let Some(hit) = cache.get(&state.chain, store) {
        println!("--> Using cache {}", &hit.diff_id.hex()[..12]);
        state.push_layer(hit.descriptor, hit.diff_id, None);
        return Ok(());
    }

    let layers = state.unpacked(store, &engine.root.layers())?;
    let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
    let dirs = ContainerDirs::create(&work.dir, &id)?;
    let (program, args) = command.split_first().ok_or_else(|| {
        Error::Other(format!(
            "Dockerfile line {}: RUN needs a command",
            step.line
        ))
    })?;
    let overrides = Overrides {
        entrypoint: Some(program.clone()),
        command: args.iter().map(Into::into).collect(),
        env: build_env.to_vec(),
        ..Overrides::default()
    };
    let process = image::process(&state.config, &overrides)?;
    // The step is a container like any other: written down as a bundle,
    // then made, run, waited for and removed by the runtime's lifecycle,
    // with its state in the build's scratch directory.
    let spec = bundle::spec_of(&EngineContainer {
        id: &id,
        process: &process,
        hostname: &id,
        layers: &layers,
        rootfs: &dirs.merged,
        root_mount: &overlay_mount(&layers, &dirs)?,
        binds: &[],
        mounts: &[],
        keep: harden::capabilities(&[], &[])?,
        limits: Default::default(),
        privileged: false,
        user_map: None,
        extras: &Default::default(),
    })?;
    bundle::write(&dirs.dir, &spec)?;
    let options = runtime::CreateOptions {
        bundle: &dirs.dir,
        id: &id,
        pid_file: None,
        console_socket: None,
    };
    let code = runtime::run(&work.dir, &options, false).map_err(|err| {
        Error::Other(format!(
            "Dockerfile line {}: `{}`: {err}",
            step.line, step.text
        ))
    })?;
    if code != 0 {
        return Err(Error::Other(format!(
            "Dockerfile line {}: `{}` failed with exit code {code}",
            step.line, step.text
        )));
    }

    let made = layer::from_upper_dir(&dirs.upper, &work.dir.join(&id), &[])?;
    dirs.remove()?;
    let descriptor = describe(&made)?;
    println!("--> {}", &made.diff_id.hex()[..12]);
    work.remember(&state.chain, &descriptor, &made.diff_id)?;
    state.push_layer(descriptor, made.diff_id, Some(made.gzipped));
    Ok(())
}
// ANCHOR_END: run_step

/// COPY and ADD: a layer of files from the build context.
fn copy_step(
    work: &WorkDir,
    state: &mut State,
    context: &Path,
    sources: &[String],
    dest: &str,
    unpack_archives: bool,
) -> Result<(), Error> {
    // A relative destination is relative to WORKDIR.
    let workdir = state
        .config
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .unwrap_or_else(|| "/".into());
    let mut dest_path = Path::new(&workdir).join(dest);
    if dest.ends_with('/') {
        dest_path.push(""); // keep "into this directory"
    }
    let out = work.dir.join(format!("copy-{}", state.layers.len()));
    let made = layer::from_context(context, sources, &dest_path, unpack_archives, &out)?;
    state.advance(&format!("COPY {} {}", made.diff_id, dest_path.display()));
    let descriptor = describe(&made)?;
    println!("--> {}", &made.diff_id.hex()[..12]);
    state.push_layer(descriptor, made.diff_id, Some(made.gzipped));
    Ok(())
}

fn describe(made: &LayerFile) -> Result<Descriptor, Error> {
    let file = File::open(&made.gzipped).map_err(|e| Error::io("open", &made.gzipped, e))?;
    let mut hashing = stage04_images::digest::HashingReader::new(file);
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| Error::io("read", &made.gzipped, e))?;
    let (digest, size) = hashing.finish();
    Ok(Descriptor {
        media_type: spec::MEDIA_TYPE_OCI_LAYER_GZIP.into(),
        digest,
        size,
        annotations: None,
        platform: None,
    })
}

// ANCHOR: commit
/// The new layers, the config and a manifest into the store, then the tag,
/// all under the store's lock so that a concurrent `rmi` can't collect the
/// blobs in between. Only then do the new cache entries count.
fn commit(
    engine: &Engine,
    store: &Store,
    work: &WorkDir,
    state: &State,
    tag: &str,
) -> Result<Digest, Error> {
    let _lock = store.lock()?;
    for layer in &state.layers {
        if let Some(file) = &layer.file {
            let stored = put_file(store, file)?;
            debug_assert_eq!(stored.digest, layer.descriptor.digest);
        }
    }
    let config_bytes = serde_json::to_vec(&state.config)
        .map_err(|e| Error::Other(format!("encode the image config: {e}")))?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(spec::MEDIA_TYPE_OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: spec::MEDIA_TYPE_OCI_CONFIG.into(),
            digest: store.put_bytes(&config_bytes)?,
            size: config_bytes.len() as u64,
            annotations: None,
            platform: None,
        },
        layers: state.layers.iter().map(|l| l.descriptor.clone()).collect(),
        annotations: None,
    };
    let descriptor = put_manifest(store, &manifest)?;
    store.tag(tag, descriptor.clone())?;
    BuildCache::new(engine).adopt(&work.pending)?;
    Ok(descriptor.digest)
}
// ANCHOR_END: commit

/// RUN layers by cache key: `<root>/build-cache/<key>.json`.
struct BuildCache {
    dir: PathBuf,
}

impl BuildCache {
    fn new(engine: &Engine) -> BuildCache {
        BuildCache {
            dir: engine.root.dir().join("build-cache"),
        }
    }

    /// A cached layer whose blob is still in the store.
    fn get(&self, key: &Digest, store: &Store) -> Option<BuiltLayer> {
        let bytes = std::fs::read(self.dir.join(format!("{}.json", key.hex()))).ok()?;
        let layer: BuiltLayer = serde_json::from_slice(&bytes).ok()?;
        store.has_blob(&layer.descriptor.digest).then_some(layer)
    }

    /// Move the entries a build wrote to `pending` into the cache.
    fn adopt(&self, pending: &Path) -> Result<(), Error> {
        let Ok(entries) = std::fs::read_dir(pending) else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("create", &self.dir, e))?;
        for entry in entries.flatten() {
            let target = self.dir.join(entry.file_name());
            std::fs::rename(entry.path(), &target).map_err(|e| Error::io("rename", &target, e))?;
        }
        Ok(())
    }
}

/// The build's scratch directory, removed with everything in it at the end.
struct WorkDir {
    dir: PathBuf,
    pending: PathBuf,
}

impl WorkDir {
    fn create(builds: &Path) -> Result<WorkDir, Error> {
        let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
        let dir = builds.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let pending = dir.join("cache");
        Ok(WorkDir { dir, pending })
    }

    /// A cache entry, made live by `commit` once its blob is in the store.
    fn remember(
        &self,
        key: &Digest,
        descriptor: &Descriptor,
        diff_id: &Digest,
    ) -> Result<(), Error> {
        std::fs::create_dir_all(&self.pending)
            .map_err(|e| Error::io("create", &self.pending, e))?;
        let entry = BuiltLayer {
            descriptor: descriptor.clone(),
            diff_id: diff_id.clone(),
            file: None,
        };
        let bytes = serde_json::to_vec(&entry)
            .map_err(|e| Error::Other(format!("encode a cache entry: {e}")))?;
        write_atomic(&self.pending.join(format!("{}.json", key.hex())), &bytes)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
