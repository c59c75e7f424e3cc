//! `berth`: run containers from images, in the foreground or in the
//! background, and manage them. The recipe is stage 05's; the engine adds
//! records, monitors, exec, logs and the commands around them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth::build::{BuildOptions, build};
use berth::exec::{ExecOptions, exec};
use berth::record::Spec;
use berth::run::{self, Ready};
use berth::volume::{self, MountArgs, VolumeCommand};
use berth::{Engine, control, show};
use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use stage01_chroot::{Error, checks, exit};
use stage02_namespaces::hostname;
use stage04_images::cli::{ImageCommand, RunArgs, UserNsArgs, image_command};
use stage04_images::reference::Reference;
use stage04_images::root::DEFAULT_ROOT;
use stage05_networks::cli::{NetworkCommand, network_command};
use stage05_networks::network::DEFAULT_NETWORK;

/// A daemonless container engine: pull and build images, run containers
/// from them (in the foreground or detached), exec into them, read their
/// logs, stop and remove them, and connect them with networks. Needs root.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  berth pull 127.0.0.1:5000/busybox\n  \
                  berth run --rm 127.0.0.1:5000/busybox echo hello\n  \
                  berth run -d --name web -p 8080:80 127.0.0.1:5000/busybox httpd -f -p 80\n  \
                  berth exec web ps\n  berth logs web\n  berth stop web && berth rm web\n\n\
                  Environment:\n  BERTH_ROOT            the state directory (as --root)\n  \
                  BERTH_MAX_LAYER_SIZE  the most one layer may unpack to, e.g. 100g \
                  (default 32g); a bigger layer is refused as a possible decompression bomb"
)]
struct Cli {
    /// Directory for all state: images, layers, containers, networks, volumes.
    #[arg(long, global = true, env = "BERTH_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container from an image.
    Run(EngineRunArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// List containers (running ones; all with -a).
    Ps {
        /// Show all containers, exited ones too.
        #[arg(short, long)]
        all: bool,
    },
    /// Print what a detached container wrote to stdout and stderr.
    Logs {
        /// Keep printing new output until the container ends.
        #[arg(short, long)]
        follow: bool,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Start stopped containers again, in the background, on the files
    /// they left.
    Start {
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: SIGTERM, then SIGKILL after a grace period.
    Stop {
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(short, long, default_value_t = 10, value_name = "SECONDS")]
        time: u64,
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers (default SIGKILL).
    Kill {
        /// The signal, e.g. TERM, SIGHUP or 9.
        #[arg(short, long, default_value = "KILL", value_parser = control::parse_signal)]
        signal: Signal,
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Remove containers: their record, log and writable layer.
    Rm {
        /// Kill running ones first.
        #[arg(short, long)]
        force: bool,
        /// Remove their anonymous volumes too (named ones stay).
        #[arg(short, long)]
        volumes: bool,
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Show what berth knows about a container, as JSON.
    Inspect {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
    #[command(flatten)]
    Image(ImageCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage volumes: data that outlives a container.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// (internal) Wait for a detached container; started by `run -d`.
    #[command(hide = true)]
    Monitor {
        #[arg(long, value_name = "FD")]
        ready_fd: i32,
        id: String,
    },
    /// (internal) Record how a detached container ended and clean up; run
    /// by its monitor.
    #[command(hide = true)]
    MonitorFinish { id: String, code: u8 },
}

#[derive(clap::Args)]
struct EngineRunArgs {
    /// Run in the background and print the container's ID; its output goes
    /// to its log (berth logs).
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open for the container (otherwise it reads /dev/null).
    #[arg(short, long)]
    interactive: bool,
    /// Give the container a terminal of its own (with -i: a shell you can type into).
    #[arg(short, long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Name the container: commands and other containers on its network
    /// find it by this name.
    #[arg(long, value_name = "NAME", value_parser = hostname::parse)]
    name: Option<String>,
    /// The network to join, or `none` for only `lo`.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_NETWORK)]
    network: String,
    /// Publish a port: HOSTPORT:CONTAINERPORT[/tcp|udp].
    #[arg(short, long = "publish", value_name = "HOST:CONTAINER")]
    publish: Vec<String>,
    /// Drop the secure defaults: keep every capability, no seccomp filter,
    /// /proc unmasked (as the workshop's stages run).
    #[arg(long)]
    privileged: bool,
    /// Give the container a capability beyond the defaults, e.g. NET_RAW
    /// (raw sockets) or ALL; see capabilities(7).
    #[arg(long = "cap-add", value_name = "CAP", value_parser = berth::harden::parse_capability)]
    cap_add: Vec<String>,
    /// Take a default capability away, e.g. CHOWN, or ALL to keep none
    /// but what --cap-add names.
    #[arg(long = "cap-drop", value_name = "CAP", value_parser = berth::harden::parse_capability)]
    cap_drop: Vec<String>,
    #[command(flatten)]
    mounts: MountArgs,
    #[command(flatten)]
    userns: UserNsArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Name (and tag) of the image, e.g. web:1 (required).
    #[arg(short, long, value_name = "NAME[:TAG]")]
    tag: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build-time variable declared with ARG.
    #[arg(long = "build-arg", value_name = "NAME=VALUE", value_parser = parse_build_arg)]
    build_args: Vec<(String, String)>,
    /// Run every RUN step, even those with a cached layer.
    #[arg(long)]
    no_cache: bool,
    /// The directory COPY and ADD take files from.
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
}

fn parse_build_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
}

#[derive(clap::Args)]
struct ExecArgs {
    /// Keep stdin open for the process (otherwise it reads /dev/null).
    #[arg(short, long)]
    interactive: bool,
    /// Give the process a terminal of its own.
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable: KEY=VALUE, or KEY to pass ours on.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside (default: the container's).
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Run as USER[:GROUP] (default: the container's user).
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// The command and its arguments.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish("berth", guard(&cli.command).and_then(|()| dispatch(cli)))
}

/// Before anything else: no inherited file reaches a container, and the
/// commands that start or enter one run from a read-only view of berth.
fn guard(command: &Command) -> Result<(), Error> {
    berth::guard::close_inherited_files()?;
    match command {
        Command::Run(_)
        | Command::Exec(_)
        | Command::Start { .. }
        | Command::Build(_)
        | Command::Monitor { .. } => berth::guard::run_from_read_only_binary(),
        _ => Ok(()),
    }
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    checks::require_root("containers, images and networks need root")?;
    let engine = Engine::open(&cli.root)?;
    match cli.command {
        Command::Run(args) => run_command(&engine, args),
        Command::Monitor { ready_fd, id } => {
            let ready = Ready::from_fd(ready_fd)?;
            run::execute(&engine, engine.containers.load(&id)?, ready)
        }
        Command::MonitorFinish { id, code } => run::conclude(&engine, &id, code),
        Command::Exec(args) => {
            let record = engine.containers.find(&args.container)?;
            let options = ExecOptions {
                command: args.command,
                env: args.env,
                workdir: args.workdir,
                user: args.user,
                interactive: args.interactive,
                tty: args.tty,
            };
            exec(&engine, &record, options)
        }
        Command::Ps { all } => show::ps(&engine, all).map(|()| 0),
        Command::Logs { follow, container } => {
            show::logs(&engine, &engine.containers.find(&container)?, follow).map(|()| 0)
        }
        Command::Inspect { container } => {
            show::inspect(&engine, &engine.containers.find(&container)?).map(|()| 0)
        }
        Command::Start { containers } => {
            for_each(&engine, &containers, |record| run::restart(&engine, record))
        }
        Command::Stop { time, containers } => for_each(&engine, &containers, |record| {
            control::stop(&engine, record, Duration::from_secs(time))
        }),
        Command::Kill { signal, containers } => for_each(&engine, &containers, |record| {
            control::signal(&engine, record, signal)
        }),
        Command::Rm {
            force,
            volumes,
            containers,
        } => for_each(&engine, &containers, |record| {
            control::remove(&engine, record, force, volumes)
        }),
        Command::Build(args) => {
            let options = BuildOptions {
                context: args.context,
                dockerfile: args.file,
                tag: args.tag,
                build_args: args.build_args.into_iter().collect(),
                no_cache: args.no_cache,
            };
            build(&engine, options).map(|_| 0)
        }
        Command::Image(ImageCommand::Rmi { image }) => {
            refuse_image_in_use(&engine, &image)?;
            image_command(&engine.root, ImageCommand::Rmi { image }, "berth")
        }
        Command::Image(command) => image_command(&engine.root, command, "berth"),
        Command::Network(command) => network_command(&engine.networks, command),
        Command::Volume(command) => volume::command(&engine, command),
    }
}

fn run_command(engine: &Engine, args: EngineRunArgs) -> Result<u8, Error> {
    let run = args.run;
    let command = run
        .command
        .into_iter()
        .map(|word| {
            word.into_string().map_err(|word| {
                Error::Other(format!(
                    "{}: berth keeps commands as UTF-8 text",
                    word.to_string_lossy()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spec = Spec {
        image: run.image,
        entrypoint: run.entrypoint,
        command,
        env: run.env,
        workdir: run.workdir,
        user: run.user,
        hostname: run.hostname,
        memory: run.limits.memory,
        cpu: run.limits.cpus.map(|c| (c.quota_us, c.period_us)),
        pids_limit: run.limits.pids_limit,
        network: args.network,
        publish: args.publish,
        auto_remove: args.rm,
        detached: args.detach,
        stats: run.stats,
        privileged: args.privileged,
        interactive: args.interactive,
        tty: args.tty,
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        userns: args.userns.userns,
        mounts: args.mounts.into_mounts(),
    };
    let record = run::create(engine, args.name, spec)?;
    if args.detach {
        run::detach(engine, &record)?;
        println!("{}", record.id);
        Ok(0)
    } else {
        run::execute(engine, record, Ready::Nobody)
    }
}

/// Do `action` to each named container; print each name done, like Docker.
/// All are tried; the first error is returned.
fn for_each(
    engine: &Engine,
    keys: &[String],
    action: impl Fn(&berth::record::Record) -> Result<(), Error>,
) -> Result<u8, Error> {
    let mut first_error = None;
    for key in keys {
        match engine
            .containers
            .find(key)
            .and_then(|record| action(&record))
        {
            Ok(()) => println!("{key}"),
            Err(err) if first_error.is_none() => first_error = Some(err),
            Err(err) => eprintln!("berth: {err}"),
        }
    }
    first_error.map_or(Ok(0), Err)
}

/// `rmi` must not pull an image from under a container that uses it.
fn refuse_image_in_use(engine: &Engine, image: &str) -> Result<(), Error> {
    let wanted = image.parse::<Reference>()?.to_string();
    let users: Vec<String> = engine
        .containers
        .list()?
        .into_iter()
        .filter(|r| {
            r.spec
                .image
                .parse::<Reference>()
                .is_ok_and(|i| i.to_string() == wanted)
        })
        .map(|r| r.display_name().to_string())
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "image {wanted} is used by container(s) {}: remove them first (berth rm)",
        users.join(", ")
    )))
}
