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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stage01_chroot::Error;
use stage02_namespaces::{hostname, supervise};
use stage04_images::digest::Digest;
use stage04_images::image::{self, Image, Overrides};
use stage04_images::layers;
use stage04_images::load::{put_file, put_manifest};
use stage04_images::overlay::{ContainerDirs, overlay_mount};
use stage04_images::reference::Reference;
use stage04_images::spec::{
    self, ContainerConfig, Descriptor, HealthConfig, ImageConfig, Manifest,
};
use stage04_images::store::{Store, write_atomic};

use stage05_networks::attach::{Plug, attach};
use stage05_networks::hosts::NameFiles;
use stage05_networks::network::DEFAULT_NETWORK;

use crate::Engine;
use crate::bundle::{self, EngineContainer};
use crate::dockerfile::{
    self, Command, Copy, Dockerfile, Instruction, MountKind, Run, Source, Stage, Step, substitute,
};
use crate::dockerignore::Ignore;
use crate::layer::{self, LayerFile};
use crate::record::{Proc, Record};
use crate::{harden, runtime};

/// What `berth build` was asked for.
#[derive(Default)]
pub struct BuildOptions {
    /// The directory COPY and ADD read from.
    pub context: PathBuf,
    /// Default: `Dockerfile` in the context; `-` reads it from stdin.
    pub dockerfile: Option<PathBuf>,
    pub tag: String,
    /// `--build-arg NAME=VALUE`, for the Dockerfile's ARGs.
    pub build_args: BTreeMap<String, String>,
    /// Run every step again, even with a cached layer.
    pub no_cache: bool,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// `--label KEY=VALUE` on the image.
    pub labels: Vec<(String, String)>,
    /// `--pull`: fetch every base image again, even one in the store.
    pub pull: bool,
    /// `--network` for RUN: `default` (the default), `none`, or a network.
    pub network: Option<String>,
    /// `--secret id=ID,src=FILE`: files RUN may mount, never stored.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--platform`: must be this machine's (see [`check_platform`]).
    pub platform: Option<String>,
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

/// The image so far, in one stage.
#[derive(Clone)]
struct State {
    config: ImageConfig,
    layers: Vec<BuiltLayer>,
    /// The cache key of everything so far.
    chain: Digest,
    /// Whether this Dockerfile set CMD (an ENTRYPOINT then keeps it).
    cmd_set_here: bool,
    /// ARG and ENV values, for `$substitution`.
    vars: BTreeMap<String, String>,
    /// ARG values, in RUN's environment only.
    build_env: Vec<String>,
    /// SHELL: what runs shell-form commands.
    shell: Vec<String>,
}

/// The whole build: its inputs and the stages made so far.
struct Builder<'a> {
    engine: &'a Engine,
    store: Store,
    work: WorkDir,
    options: &'a BuildOptions,
    context: PathBuf,
    ignore: Ignore,
    /// The values of the ARGs before the first FROM.
    globals: BTreeMap<String, String>,
    names: Vec<Option<String>>,
    /// Each stage's final state, once built.
    built: Vec<Option<State>>,
}

// ANCHOR: build
/// Build the Dockerfile in `options.context`; returns the full tag.
pub fn build(engine: &Engine, options: BuildOptions) -> Result<String, Error> {
    // Everything that can be checked first.
    let tag: Reference = options.tag.parse()?;
    let platform = options.platform.as_deref();
    check_platform("--platform", platform, &BTreeMap::new())?;
    let context = std::fs::canonicalize(&options.context)
        .map_err(|e| Error::io("open the build context", &options.context, e))?;
    let (file_name, text) = read_dockerfile(&context, options.dockerfile.as_deref())?;
    let dockerfile = dockerfile::parse(&file_name, &text)?;
    let named = options
        .dockerfile
        .as_deref()
        .filter(|f| *f != Path::new("-"));
    let ignore = Ignore::for_build(&context, named)?;
    let target = target_stage(&dockerfile, options.target.as_deref())?;
    let needed = needed_stages(&dockerfile, target);

    let mut builder = Builder {
        engine,
        store: engine.root.store()?,
        work: WorkDir::create(&engine.root.dir().join("build"))?,
        options: &options,
        context,
        ignore,
        globals: global_args(&dockerfile, &options.build_args),
        names: dockerfile.stages.iter().map(|s| s.name.clone()).collect(),
        built: vec![None; dockerfile.stages.len()],
    };
    // Stages the target does not need are not built at all.
    for (index, stage) in dockerfile.stages.iter().enumerate() {
        if !needed.contains(&index) {
            println!("[stage {index}] skipped: the target does not need it");
            continue;
        }
        let state = builder.build_stage(index, stage)?;
        builder.built[index] = Some(state);
    }
    let mut state = builder.built[target]
        .take()
        .ok_or_else(|| Error::Other("the target stage was not built".into()))?;
    let labels = state
        .container_config()
        .labels
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in &options.labels {
        labels.insert(key.clone(), value.clone());
    }
    let digest = commit(
        engine,
        &builder.store,
        &builder.work,
        &state,
        &tag.to_string(),
    )?;
    println!("Successfully tagged {tag}");
    println!("Digest: {digest}");
    Ok(tag.to_string())
}
// ANCHOR_END: build

/// The Dockerfile's name for messages, and its text (`-`: from stdin).
fn read_dockerfile(context: &Path, file: Option<&Path>) -> Result<(String, String), Error> {
    match file {
        Some(path) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::io("read the Dockerfile from", "stdin", e))?;
            Ok(("Dockerfile".into(), text))
        }
        _ => {
            let path = file.map_or_else(|| context.join("Dockerfile"), Path::to_path_buf);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            Ok((name, text))
        }
    }
}

/// `--target NAME`, or the last stage.
fn target_stage(dockerfile: &Dockerfile, target: Option<&str>) -> Result<usize, Error> {
    let Some(target) = target else {
        return Ok(dockerfile.stages.len() - 1);
    };
    let lower = target.to_ascii_lowercase();
    dockerfile
        .stages
        .iter()
        .position(|s| s.name.as_deref() == Some(&lower))
        .ok_or_else(|| {
            let names: Vec<_> = dockerfile
                .stages
                .iter()
                .filter_map(|s| s.name.clone())
                .collect();
            Error::Other(format!(
                "--target {target}: the Dockerfile has no stage of that name (it has: {})",
                names.join(", ")
            ))
        })
}

// ANCHOR: needed_stages
/// The stages `target` needs: itself, and, transitively, the stages it
/// starts FROM or copies or mounts from.
fn needed_stages(dockerfile: &Dockerfile, target: usize) -> BTreeSet<usize> {
    let find = |name: &str, before: usize| -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        let by_name = dockerfile.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(&lower));
        by_name.or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(index) = todo.pop() {
        if !needed.insert(index) {
            continue;
        }
        let stage = &dockerfile.stages[index];
        let mut uses: Vec<&str> = vec![stage.base.as_str()];
        for step in &stage.steps {
            match &step.instruction {
                Instruction::Copy(copy) => uses.extend(copy.from.as_deref()),
                Instruction::Run(run) => {
                    uses.extend(run.mounts.iter().filter_map(|m| m.from.as_deref()))
                }
                _ => {}
            }
        }
        let by_name = |name: &&str| {
            dockerfile.stages[..index]
                .iter()
                .any(|s| s.name.as_deref() == Some(&name.to_ascii_lowercase()))
        };
        todo.extend(
            uses.iter()
                .filter(|n| by_name(n) || n.parse::<usize>().is_ok())
                .filter_map(|name| find(name, index)),
        );
    }
    needed
}
// ANCHOR_END: needed_stages

/// The ARGs before the first FROM, with `--build-arg` values, and the
/// platform ARGs BuildKit predefines.
fn global_args(
    dockerfile: &Dockerfile,
    build_args: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let platform = stage04_images::spec::host_platform();
    let os_arch = format!("{}/{}", platform.os, platform.architecture);
    let mut globals = BTreeMap::new();
    for prefix in ["TARGET", "BUILD"] {
        globals.insert(format!("{prefix}PLATFORM"), os_arch.clone());
        globals.insert(format!("{prefix}OS"), platform.os.clone());
        globals.insert(format!("{prefix}ARCH"), platform.architecture.clone());
    }
    for (name, default) in &dockerfile.global_args {
        let value = build_args
            .get(name)
            .cloned()
            .or_else(|| default.as_ref().map(|d| substitute(d, &globals)));
        if let Some(value) = value {
            globals.insert(name.clone(), value);
        }
    }
    globals
}

impl Builder<'_> {
    /// FROM, then every step of one stage.
    fn build_stage(&mut self, index: usize, stage: &Stage) -> Result<State, Error> {
        let base = substitute(&stage.base, &self.globals);
        println!("[stage {index}] {}", stage.text);
        check_platform("FROM --platform", stage.platform.as_deref(), &self.globals)?;
        let from_stage = self.stage_named(&base).is_some();
        let mut state = self.base_state(&base)?;
        if !from_stage {
            self.run_onbuild(&mut state)?;
        }
        let count = stage.steps.len();
        for (n, step) in stage.steps.iter().enumerate() {
            println!("STEP {}/{}: {}", n + 1, count, step.text);
            self.step(&mut state, step).map_err(|e| at_line(step, e))?;
        }
        Ok(state)
    }

    /// The base image's ONBUILD instructions run first, as Docker runs
    /// them, and are not passed on to this image.
    fn run_onbuild(&mut self, state: &mut State) -> Result<(), Error> {
        let triggers = state
            .config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
        for trigger in triggers {
            println!("ONBUILD {trigger}");
            let steps = dockerfile::parse_changes(&trigger)
                .map_err(|e| Error::Other(format!("the base image's ONBUILD {trigger}: {e}")))?;
            for step in &steps {
                self.step(state, step).map_err(|e| {
                    Error::Other(format!("the base image's ONBUILD {trigger}: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// The state a FROM starts with: an earlier stage, `scratch`, or an
    /// image (pulled if it isn't in the store, or with `--pull`).
    fn base_state(&self, base: &str) -> Result<State, Error> {
        if let Some(state) = self.stage_named(base) {
            return Ok(state.clone());
        }
        if base == "scratch" {
            return Ok(State::scratch());
        }
        Ok(State::from_image(self.image(base)?))
    }

    fn stage_named(&self, name: &str) -> Option<&State> {
        let lower = name.to_ascii_lowercase();
        let index = self.names.iter().position(|n| n.as_deref() == Some(&lower));
        index.and_then(|i| self.built[i].as_ref())
    }

    fn image(&self, name: &str) -> Result<Image, Error> {
        let reference: Reference = name.parse()?;
        let in_store = self.store.resolve(&reference.to_string())?.is_some();
        if self.options.pull || !in_store {
            println!("Pulling {reference}");
            let options = stage04_images::registry::RegistryOptions {
                insecure_registries: Vec::new(),
                credentials: None,
                auth_file: None,
            };
            stage04_images::pull::pull(&self.store, &reference, &options)?;
        }
        Image::open(&self.store, name)
    }

    /// A layer the cache has for everything so far (unless --no-cache):
    /// taken as this step's, and true.
    fn take_cached(&self, state: &mut State) -> bool {
        let cache = BuildCache::new(self.engine);
        let hit = (!self.options.no_cache)
            .then(|| cache.get(&state.chain, &self.store))
            .flatten();
        match hit {
            Some(hit) => {
                println!("--> Using cache {}", &hit.diff_id.hex()[..12]);
                state.push_layer(hit.descriptor, hit.diff_id, None);
                true
            }
            None => false,
        }
    }

    /// One step, noted in the image's history: what ran, and whether it
    /// made a layer (`berth history` shows them). The entries carry no
    /// time, so a rebuild from the cache is the same image, ID and all.
    fn step(&mut self, state: &mut State, step: &Step) -> Result<(), Error> {
        let layers_before = state.layers.len();
        self.step_itself(state, step)?;
        state.config.history.push(spec::History {
            created_by: Some(substitute(&step.text, &state.vars)),
            empty_layer: state.layers.len() == layers_before,
            ..Default::default()
        });
        Ok(())
    }

    fn step_itself(&mut self, state: &mut State, step: &Step) -> Result<(), Error> {
        match &step.instruction {
            Instruction::Arg(args) => {
                for (name, default) in args {
                    let value = self
                        .options
                        .build_args
                        .get(name)
                        .cloned()
                        .or_else(|| default.as_ref().map(|d| substitute(d, &state.vars)))
                        .or_else(|| self.globals.get(name).cloned());
                    if let Some(value) = &value {
                        state.vars.insert(name.clone(), value.clone());
                        state
                            .build_env
                            .retain(|e| e.split('=').next() != Some(name));
                        state.build_env.push(format!("{name}={value}"));
                    }
                    state.advance(&format!("ARG {name}={}", value.unwrap_or_default()));
                }
                Ok(())
            }
            Instruction::Run(run) => self.run_step(state, run),
            Instruction::Copy(copy) => self.copy_step(state, copy, false),
            Instruction::Add(copy) => self.copy_step(state, copy, true),
            instruction => {
                configure(state, instruction);
                let text = substitute(&step.text, &state.vars);
                state.advance(&text);
                Ok(())
            }
        }
    }
}

/// `FROM --platform=...`: berth builds for this machine's platform only.
fn check_platform(
    what: &str,
    platform: Option<&str>,
    globals: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let Some(platform) = platform.map(|p| substitute(p, globals)) else {
        return Ok(());
    };
    let host = stage04_images::spec::host_platform();
    let ours = format!("{}/{}", host.os, host.architecture);
    match platform == ours || platform.starts_with(&format!("{ours}/")) {
        true => Ok(()),
        false => Err(Error::Other(format!(
            "{what}={platform}: berth builds for this machine's platform, {ours}, only \
             (its RUN steps run here, with no emulator)"
        ))),
    }
}

/// An error in a step, with the step's line.
fn at_line(step: &Step, error: Error) -> Error {
    Error::Other(format!(
        "Dockerfile line {}: `{}`: {error}",
        step.line, step.text
    ))
}

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
    for change in &changes {
        configure(&mut state, change);
    }
    let work = WorkDir::create(&engine.root.dir().join("build"))?;
    let out = work.dir.join("layer.tar.gz");
    // The files berth binds over leave empty mount points: not the container's.
    let skip: Vec<PathBuf> = (stage05_networks::hosts::TARGETS.iter())
        .map(|inside| PathBuf::from(inside.trim_start_matches('/')))
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
    // Docker's commit notes the container's command; and when, since a
    // commit is a moment, not a recipe.
    state.config.history.push(spec::History {
        created: Some(crate::logfile::rfc3339_nano(crate::logfile::now_nanos())),
        created_by: Some(record.spec.command.join(" ")),
        comment: Some(format!("berth commit {}", record.display_name())),
        ..Default::default()
    });
    commit(engine, &store, &work, &state, &tag.to_string())
}

/// `-c` lines: the Dockerfile instructions that change only the config.
fn parse_changes(changes: &[String]) -> Result<Vec<Instruction>, Error> {
    dockerfile::parse_changes(&changes.join("\n"))?
        .into_iter()
        .map(|step| match step.instruction {
            Instruction::Run(_)
            | Instruction::Copy { .. }
            | Instruction::Add { .. }
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
        let mut vars = BTreeMap::new();
        let env = image.config.config.as_ref().and_then(|c| c.env.clone());
        for pair in env.unwrap_or_default() {
            if let Some((name, value)) = pair.split_once('=') {
                vars.insert(name.to_string(), value.to_string());
            }
        }
        let shell = image.config.config.as_ref().and_then(|c| c.shell.clone());
        State {
            config: image.config,
            layers,
            chain: image.descriptor.digest,
            cmd_set_here: false,
            vars,
            build_env: Vec::new(),
            shell: shell.unwrap_or_else(default_shell),
        }
    }

    /// `FROM scratch`: no layers, an empty config for this machine.
    fn scratch() -> State {
        let platform = stage04_images::spec::host_platform();
        State {
            config: ImageConfig {
                architecture: platform.architecture,
                os: platform.os,
                config: None,
                rootfs: spec::RootFs {
                    r#type: "layers".into(),
                    diff_ids: Vec::new(),
                },
                created: None,
                history: Vec::new(),
            },
            layers: Vec::new(),
            chain: Digest::of(b"scratch"),
            cmd_set_here: false,
            vars: BTreeMap::new(),
            build_env: Vec::new(),
            shell: default_shell(),
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

    fn workdir(&self) -> String {
        let dir = self
            .config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone());
        dir.filter(|d| !d.is_empty()).unwrap_or_else(|| "/".into())
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

    /// A shell-form command under the SHELL in effect.
    fn command(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Exec(words) => words.clone(),
            Command::Shell(script) => [self.shell.clone(), vec![script.clone()]].concat(),
        }
    }
}

fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

// ANCHOR: configure
/// ENV, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL, VOLUME, SHELL,
/// HEALTHCHECK, STOPSIGNAL, ONBUILD: the config changes.
fn configure(state: &mut State, instruction: &Instruction) {
    let cmd_set_here = state.cmd_set_here;
    let command = |c: &Command| state.command(c);
    let (cmd, entrypoint) = match instruction {
        Instruction::Cmd(c) => (Some(command(c)), None),
        Instruction::Entrypoint(c) => (None, Some(command(c))),
        _ => (None, None),
    };
    let vars = state.vars.clone();
    let mut new_vars = Vec::new();
    let config = state.container_config();
    match instruction {
        Instruction::Env(pairs) => {
            let env = config.env.get_or_insert_with(Vec::new);
            let mut scope = vars;
            for (name, value) in pairs {
                let value = substitute(value, &scope);
                env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(name.as_str()));
                env.push(format!("{name}={value}"));
                scope.insert(name.clone(), value.clone());
                new_vars.push((name.clone(), value));
            }
        }
        Instruction::Workdir(dir) => {
            let dir = substitute(dir, &vars);
            let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
            config.working_dir = Some(Path::new(&base).join(dir).to_string_lossy().into_owned());
        }
        Instruction::User(user) => config.user = Some(substitute(user, &vars)),
        Instruction::Cmd(_) => {
            config.cmd = cmd;
            state.cmd_set_here = true;
        }
        Instruction::Entrypoint(_) => {
            config.entrypoint = entrypoint;
            if !cmd_set_here {
                config.cmd = None; // an inherited CMD was meant for the old entrypoint
            }
        }
        Instruction::Expose(ports) => {
            let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for port in ports {
                let port = substitute(port, &vars);
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
                labels.insert(substitute(key, &vars), substitute(value, &vars));
            }
        }
        Instruction::Volume(dirs) => {
            // Checked when a container is made from the image (`volume`).
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for dir in dirs {
                volumes.insert(substitute(dir, &vars), serde_json::json!({}));
            }
        }
        Instruction::Shell(shell) => {
            config.shell = Some(shell.clone());
            state.shell = shell.clone();
        }
        Instruction::Healthcheck(health) => {
            config.healthcheck = Some(match health {
                None => HealthConfig {
                    test: vec!["NONE".into()],
                    ..HealthConfig::default()
                },
                Some(h) => HealthConfig {
                    test: h.test.clone(),
                    interval: h.interval,
                    timeout: h.timeout,
                    start_period: h.start_period,
                    start_interval: h.start_interval,
                    retries: h.retries,
                },
            });
        }
        Instruction::StopSignal(signal) => config.stop_signal = Some(substitute(signal, &vars)),
        Instruction::OnBuild(line) => config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(line.clone()),
        Instruction::Maintainer(_)
        | Instruction::Arg(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_) => {}
    }
    state.vars.extend(new_vars);
}
// ANCHOR_END: configure

impl Builder<'_> {
    // ANCHOR: run_step
    /// RUN: the command in a container on the layers so far; its changes
    /// are the new layer. A cached layer is used instead when the key
    /// matches.
    fn run_step(&mut self, state: &mut State, run: &Run) -> Result<(), Error> {
        let command = state.command(&run.command);
        let network = run
            .network
            .clone()
            .or_else(|| self.options.network.clone())
            .unwrap_or_else(|| "default".into());
        let binds = self.bind_keys(run)?;
        state.advance(&format!(
            "RUN {command:?} {:?} {:?} {binds:?} {network}",
            state.build_env, run.mounts
        ));
        if self.take_cached(state) {
            return Ok(());
        }

        let layers = state.unpacked(&self.store, &self.engine.root.layers())?;
        let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
        let dirs = ContainerDirs::create(&self.work.dir, &id)?;
        let (program, args) = command
            .split_first()
            .ok_or_else(|| Error::Other("RUN needs a command".into()))?;
        let overrides = Overrides {
            entrypoint: Some(program.clone()),
            command: args.iter().map(Into::into).collect(),
            env: state.build_env.clone(),
            ..Overrides::default()
        };
        let process = image::process(&state.config, &overrides)?;
        let mounts = self.run_mounts(run, &id)?;
        // On a network, it resolves names like any container: berth's
        // /etc/hosts, /etc/hostname and /etc/resolv.conf are bound in.
        // `--network NAME` on `berth build` may also name a berth network.
        let on_network = match network.as_str() {
            "none" => None,
            "default" => Some(DEFAULT_NETWORK.to_string()),
            "host" => {
                return Err(Error::Other(
                    "RUN --network=host needs an entitlement berth does not grant: use \
                     default (the default network) or none"
                        .into(),
                ));
            }
            name => Some(name.to_string()),
        };
        let files = NameFiles::in_dir(&dirs.dir);
        let binds = match &on_network {
            Some(name) => {
                files.write(&id)?;
                // Its /etc/hosts is its network's (see stage 05's hosts.rs).
                let networks = &self.engine.networks;
                if let Some(network) = networks.existing(name)? {
                    files.share(&networks.hosts(&network).file()?)?;
                }
                files.binds()
            }
            None => Vec::new(),
        };
        // The step is a container like any other: written down as a bundle,
        // then made, plugged in, run, waited for, unplugged and removed by
        // the runtime's lifecycle, with its state in the build's scratch
        // directory.
        let spec = bundle::spec_of(&EngineContainer {
            id: &id,
            process: &process,
            hostname: &id,
            layers: &layers,
            rootfs: &dirs.merged,
            root_mount: &overlay_mount(&layers, &dirs)?,
            binds: &binds,
            mounts: &mounts,
            keep: harden::capabilities(&[], &[])?,
            limits: Default::default(),
            privileged: false,
            user_map: None,
            extras: &Default::default(),
        })?;
        bundle::write(&dirs.dir, &spec)?;
        let code = self.run_container(&dirs.dir, &id, on_network.as_deref())?;
        if code != 0 {
            return Err(Error::Other(format!("failed with exit code {code}")));
        }

        // Mount points are the mounts', not the image's.
        let skip: Vec<PathBuf> = mounts
            .iter()
            .map(|(target, _)| target.clone())
            .chain(binds.iter().map(|bind| bind.target.clone()))
            .map(|target| target.strip_prefix("/").unwrap_or(&target).to_path_buf())
            .collect();
        let made = layer::from_upper_dir(&dirs.upper, &self.work.dir.join(&id), &skip)?;
        dirs.remove()?;
        let descriptor = describe(&made)?;
        println!("--> {}", &made.diff_id.hex()[..12]);
        self.work
            .remember(&state.chain, &descriptor, &made.diff_id)?;
        state.push_layer(descriptor, made.diff_id, Some(made.gzipped));
        Ok(())
    }
    // ANCHOR_END: run_step

    // ANCHOR: run_container
    /// Create the step's container (its init waits, as our child: it dies
    /// with us), plug it into the default network as `berth run` does,
    /// start it, wait, and unplug it. Nothing is written down first: the
    /// veth goes with the container's network namespace and the address
    /// lease with our process, so even a SIGKILLed build leaves nothing.
    fn run_container(&self, bundle: &Path, id: &str, network: Option<&str>) -> Result<u8, Error> {
        let root = &self.work.dir;
        let options = runtime::CreateOptions {
            bundle,
            id,
            pid_file: None,
            console_socket: None,
        };
        let init = runtime::create_staying(root, &options)?;
        let result = self.plugged_in(id, init, network, || {
            runtime::start(root, id)?;
            let status = supervise::supervise(init)
                .map_err(|e| Error::Other(format!("wait for the RUN container: {e}")))?;
            Ok(stage01_chroot::exit::exit_code(status))
        });
        if result.is_err() {
            let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
            let _ = supervise::supervise(init);
        }
        runtime::delete(root, id, true)?;
        result
    }

    /// `run` with the container `init` on `network` (if any), unplugged
    /// again afterwards, whatever happened.
    fn plugged_in(
        &self,
        id: &str,
        init: nix::unistd::Pid,
        network: Option<&str>,
        run: impl FnOnce() -> Result<u8, Error>,
    ) -> Result<u8, Error> {
        let Some(name) = network else {
            return run();
        };
        let networks = &self.engine.networks;
        let network = match name == DEFAULT_NETWORK {
            true => networks.get(name)?, // made on first use
            false => networks.get_existing(name)?,
        };
        let plug = Plug {
            program: "berth",
            networks,
            network: Some(&network),
            id,
            name: None,
            publish: &[],
            containers: &self.work.dir,
            lease_owner: std::process::id() as i32, // we wait for it
        };
        let attachment = attach(&plug, &network, 0, init)?;
        let result = run();
        if let Err(err) = attachment.detach() {
            eprintln!("berth: warning: unplug the RUN container from {name}: {err}");
        }
        result
    }
    // ANCHOR_END: run_container

    // ANCHOR: run_mounts
    /// `RUN --mount`s as OCI mounts: a cache directory kept under the berth
    /// root, a file or directory of the context or a stage, a secret file
    /// (bound read-only, never in a layer), a tmpfs.
    fn run_mounts(&self, run: &Run, id: &str) -> Result<Vec<(PathBuf, Value)>, Error> {
        let mut listed = Vec::new();
        for (n, mount) in run.mounts.iter().enumerate() {
            let target = PathBuf::from(&mount.target);
            let bind = |source: &Path, writable: bool| {
                let mut options = vec!["rbind", "rprivate", "nosuid", "nodev"];
                if !writable {
                    options.push("ro");
                }
                json!({"destination": target, "type": "bind", "source": source, "options": options})
            };
            let spec = match mount.kind {
                MountKind::Cache => {
                    let key = mount.id.clone().unwrap_or_else(|| mount.target.clone());
                    let dir = self
                        .engine
                        .root
                        .dir()
                        .join("build-cache-mounts")
                        .join(Digest::of(key.as_bytes()).hex());
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
                    bind(&dir, true)
                }
                MountKind::Secret => {
                    let secret_id = mount.id.clone().unwrap_or_default();
                    match self.options.secrets.get(&secret_id) {
                        Some(file) => bind(file, false),
                        None if mount.required => {
                            return Err(Error::Other(format!(
                                "the secret {secret_id} is required: pass it with \
                                 --secret id={secret_id},src=FILE"
                            )));
                        }
                        None => continue,
                    }
                }
                MountKind::Tmpfs => json!({
                    "destination": target, "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev"],
                }),
                MountKind::Bind => {
                    let source = self.bind_source(mount, &format!("{id}-mount{n}"))?;
                    bind(&source, false)
                }
            };
            listed.push((target, spec));
        }
        Ok(listed)
    }
    // ANCHOR_END: run_mounts

    /// `type=bind`: a copy of the context's files (without what
    /// .dockerignore leaves out) or of a stage's, read-only; the copy
    /// keeps the build's changes away from the originals.
    fn bind_source(&self, mount: &dockerfile::Mount, name: &str) -> Result<PathBuf, Error> {
        let out = self.work.dir.join(format!("{name}.tar"));
        let sources = [mount_source(mount)];
        let job = self.bind_job(&sources);
        let made = match &mount.from {
            Some(from) => {
                let (layers, _) = self.layers_of(from)?;
                let scratch = self.work.dir.join(format!("{name}-from"));
                let job = layer::CopyJob {
                    root: Path::new("/"),
                    ignore: &Ignore::default(),
                    ..job
                };
                layer::copy_layer_from(&layers, &scratch, &job, &out)?
            }
            None => layer::copy_layer(&job, &out)?,
        };
        let file = File::open(&made.gzipped).map_err(|e| Error::io("open", &made.gzipped, e))?;
        let unpacked = layers::ensure_unpacked(
            &self.work.dir.join("binds"),
            &made.diff_id,
            spec::MEDIA_TYPE_OCI_LAYER_GZIP,
            file,
        )?;
        // A single file is bound as that file, not as a directory holding it.
        let name = mount
            .source
            .as_deref()
            .map(Path::new)
            .and_then(Path::file_name);
        let single = name.map(|name| unpacked.join(name));
        match single {
            Some(file) if file.is_file() => Ok(file),
            _ => Ok(unpacked),
        }
    }

    /// What each `type=bind` mount shows, as cache keys: a stat-only
    /// fingerprint of the context's files, or the other stage's key. A
    /// changed file under a bind mount runs the step again.
    fn bind_keys(&self, run: &Run) -> Result<Vec<Digest>, Error> {
        let mut keys = Vec::new();
        for mount in run.mounts.iter().filter(|m| m.kind == MountKind::Bind) {
            keys.push(match &mount.from {
                Some(from) => self.source_state(from)?.chain,
                None => layer::fingerprint(&self.bind_job(&[mount_source(mount)]))?,
            });
        }
        Ok(keys)
    }

    /// The COPY that makes a bind mount's files from the context.
    fn bind_job<'a>(&'a self, sources: &'a [layer::CopySource]) -> layer::CopyJob<'a> {
        layer::CopyJob {
            root: &self.context,
            ignore: &self.ignore,
            sources,
            dest: Path::new("/"),
            unpack_archives: false,
            owner: (0, 0),
            chmod: None,
            dest_info: layer::DestInfo {
                is_dir: true,
                missing: Vec::new(),
            },
        }
    }

    /// `--from=NAME`: an earlier stage, or an image.
    fn source_state(&self, from: &str) -> Result<State, Error> {
        let from = substitute(from, &self.globals);
        let stage = self.stage_named(&from).or_else(|| {
            from.parse::<usize>()
                .ok()
                .and_then(|i| self.built.get(i))
                .and_then(Option::as_ref)
        });
        match stage {
            Some(state) => Ok(state.clone()),
            None => Ok(State::from_image(self.image(&from)?)),
        }
    }

    /// `--from=NAME`: an earlier stage's layers (unpacked) and cache key,
    /// or an image's.
    fn layers_of(&self, from: &str) -> Result<(Vec<PathBuf>, Digest), Error> {
        let state = self.source_state(from)?;
        let layers = state.unpacked(&self.store, &self.engine.root.layers())?;
        Ok((layers, state.chain))
    }

    // ANCHOR: copy_step
    /// COPY and ADD: a layer of files from the build context, here-documents
    /// or another stage. The cache key is a stat-only fingerprint of the
    /// sources (or the other stage's key), so a cached COPY reads nothing.
    fn copy_step(&mut self, state: &mut State, copy: &Copy, add: bool) -> Result<(), Error> {
        let vars = state.vars.clone();
        let dest_text = substitute(&copy.dest, &vars);
        if copy.sources.len() > 1 && !(dest_text.ends_with('/') || dest_text.ends_with('.')) {
            return Err(Error::Other(format!(
                "with more than one source the destination must be a directory ending in /, \
                 not {dest_text}"
            )));
        }
        // `dir/`, `.` and `dir/.` all mean "into this directory".
        let into_dir = dest_text.ends_with('/') || dest_text == "." || dest_text.ends_with("/.");
        let mut dest = Path::new(&state.workdir()).join(&dest_text);
        if into_dir {
            dest.push(""); // keep "into this directory"
        }
        let sources: Vec<layer::CopySource> = copy
            .sources
            .iter()
            .map(|source| match source {
                Source::Path(path) => {
                    let path = substitute(path, &vars);
                    if add && (path.starts_with("http://") || path.starts_with("https://") || path.starts_with("git@")) {
                        return Err(Error::Other(format!(
                            "ADD {path}: berth adds local files and archives only; fetch it in a RUN step (RUN has the network)"
                        )));
                    }
                    Ok(layer::CopySource::Path(path))
                }
                Source::Inline {
                    name,
                    content,
                    expand,
                } => Ok(layer::CopySource::Inline {
                    name: name.clone(),
                    content: match expand {
                        true => substitute(content, &vars).into_bytes(),
                        false => content.clone().into_bytes(),
                    },
                }),
            })
            .collect::<Result<_, Error>>()?;
        let chown = copy.chown.as_ref().map(|c| substitute(c, &vars));
        // Numbers need no lookup; names are looked up in the image.
        let numeric = chown.as_ref().and_then(|c| numeric_owner(c));
        let mut job = layer::CopyJob {
            root: &self.context,
            ignore: &self.ignore,
            sources: &sources,
            dest: &dest,
            unpack_archives: add,
            owner: numeric.unwrap_or((0, 0)),
            chmod: copy.chmod,
            dest_info: layer::DestInfo::default(),
        };
        let from = match &copy.from {
            Some(from) => Some(self.layers_of(from)?),
            None => None,
        };
        let empty = Ignore::default();
        let key_part = match &from {
            Some((_, chain)) => {
                job.root = Path::new("/");
                job.ignore = &empty;
                format!("{chain} {:?} {:?} {:?}", copy.sources, chown, copy.chmod)
            }
            None => layer::fingerprint(&job)?.to_string(),
        };
        state.advance(&format!(
            "{} {key_part} {}",
            if add { "ADD" } else { "COPY" },
            dest.display()
        ));
        if self.take_cached(state) {
            return Ok(());
        }

        let lower = state.unpacked(&self.store, &self.engine.root.layers())?;
        job.dest_info = layer::dest_info(&lower, &dest, into_dir);
        if let (Some(chown), None) = (&chown, numeric) {
            job.owner = bundle::user_in_layers(&lower, chown)
                .map_err(|e| Error::Other(format!("--chown={chown}: {e}")))?;
        }
        let out = self.work.dir.join(format!(
            "copy-{}",
            Digest::of(state.chain.hex().as_bytes()).hex()
        ));
        let made = match &from {
            Some((layers, _)) => {
                let scratch = out.with_extension("from");
                layer::copy_layer_from(layers, &scratch, &job, &out)?
            }
            None => layer::copy_layer(&job, &out)?,
        };
        let descriptor = describe(&made)?;
        println!("--> {}", &made.diff_id.hex()[..12]);
        self.work
            .remember(&state.chain, &descriptor, &made.diff_id)?;
        state.push_layer(descriptor, made.diff_id, Some(made.gzipped));
        Ok(())
    }
    // ANCHOR_END: copy_step
}

/// A bind mount's `source=` (the whole context or stage by default).
fn mount_source(mount: &dockerfile::Mount) -> layer::CopySource {
    layer::CopySource::Path(mount.source.clone().unwrap_or_else(|| ".".into()))
}

/// `--chown=1000:1000` (or `1000`): no lookup needed.
fn numeric_owner(chown: &str) -> Option<(u32, u32)> {
    let (user, group) = chown.split_once(':').unwrap_or((chown, chown));
    Some((user.parse().ok()?, group.parse().ok()?))
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

// ANCHOR: workdir
impl WorkDir {
    /// A new scratch directory, with its owner (our process) written in
    /// it first; what killed builds left is removed on the way.
    fn create(builds: &Path) -> Result<WorkDir, Error> {
        remove_abandoned(builds);
        let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
        let dir = builds.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let me = Proc::of(std::process::id() as i32)
            .ok_or_else(|| Error::Other("read the start time of our own process".into()))?;
        let owner = serde_json::to_vec(&me).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&dir.join(OWNER), &owner)?;
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

/// The file naming the process a scratch directory belongs to.
const OWNER: &str = "owner.json";

/// Scratch directories of builds that were killed (their owner is gone):
/// the runtime's state of their RUN containers (cgroups included) is
/// deleted, then the directory. A directory without an owner file yet is
/// being made, and left alone.
fn remove_abandoned(builds: &Path) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        let owner: Option<Proc> = std::fs::read(dir.join(OWNER))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if owner.is_none_or(|owner| owner.alive()) {
            continue;
        }
        let mut all_gone = true;
        if let Ok(containers) = std::fs::read_dir(dir.join("runtime")) {
            for id in containers.flatten().map(|e| e.file_name()) {
                all_gone &= runtime::delete(&dir, &id.to_string_lossy(), true).is_ok();
            }
        }
        // What could not be removed stays listed, for the next build.
        if all_gone {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
// ANCHOR_END: workdir

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
