//! `berth`: run containers from images, in the foreground or in the
//! background, and manage them. The recipe is stage 05's; the engine adds
//! records, monitors, exec, logs and the commands around them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth::build::{BuildOptions, build};
use berth::exec::{ExecOptions, exec};
use berth::format::{Filters, Format};
use berth::record::Spec;
use berth::run::{self, Ready};
use berth::volume::{self, MountArgs, VolumeCommand};
use berth::{Engine, commands, control, show};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use nix::sys::signal::Signal;
use stage01_chroot::{Error, checks, exit};
use stage04_images::cli::{ImageCommand, RunArgs, UserNsArgs, image_command};
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
    #[command(after_help = RUN_EXAMPLES)]
    Run(EngineRunArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Attach to a running container. One with a terminal (-dt, -dit):
    /// yours to type in, until you leave it running with Ctrl-P Ctrl-Q (see
    /// --detach-keys). One without: its output as it comes, and your
    /// signals passed on (Ctrl-C is SIGINT to it), until it ends.
    Attach {
        /// The keys that detach, e.g. ctrl-a,d (default: ctrl-p,ctrl-q,
        /// or the container's run --detach-keys).
        #[arg(long, value_name = "KEYS", value_parser = check_detach_keys)]
        detach_keys: Option<String>,
        /// Don't send what you type; only watch.
        #[arg(long)]
        no_stdin: bool,
        /// Pass the signals we get (Ctrl-C's SIGINT, SIGTERM...) on to a
        /// container without a terminal; with false, Ctrl-C leaves it.
        #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        sig_proxy: bool,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// List containers (running ones; all with -a).
    #[command(after_help = PS_EXAMPLES)]
    Ps {
        /// Show all containers, exited ones too.
        #[arg(short, long)]
        all: bool,
        /// Print only the IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Print each container as TEMPLATE says, e.g. '{{.ID}} {{.Names}}',
        /// 'table {{.Names}}\t{{.Status}}', '{{json .}}', or json.
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
        /// Only containers that match: id=, name=, status=created|running|restarting|exited|paused,
        /// label=KEY[=VALUE], ancestor=IMAGE, network=NAME (repeat to combine).
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Print what a container wrote to stdout (to our stdout) and stderr
    /// (to our stderr), from its log: Docker's json-file shape, one JSON
    /// object a line in <root>/containers/<id>/container.log.
    #[command(after_help = LOGS_EXAMPLES)]
    Logs {
        /// Keep printing new output until the container ends.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (all: every line).
        #[arg(short = 'n', long, value_name = "N|all", value_parser = parse_tail)]
        tail: Option<TailCount>,
        /// Only lines written at or after TIME: RFC 3339 (2024-05-01T12:00:00Z),
        /// a date, Unix seconds, or a duration before now (10m, 1h30m).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only lines written before TIME (as --since).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Show each line's time (RFC 3339, nanoseconds) in front.
        #[arg(short, long)]
        timestamps: bool,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Start stopped containers again, in the background, on the files
    /// they left.
    Start {
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: SIGTERM (or their --stop-signal), then SIGKILL after
    /// a grace period.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's
        /// --stop-timeout, or 10).
        #[arg(short, long, value_name = "SECONDS")]
        time: Option<u64>,
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
    /// Show what berth knows about a container, as JSON (or, for a name
    /// that is no container's, the image's, as `image inspect` shows it).
    Inspect {
        #[arg(value_name = "CONTAINER|IMAGE")]
        container: String,
    },
    /// Stop containers, then start them again in the background.
    Restart {
        /// Seconds to wait before SIGKILL (default: the container's
        /// --stop-timeout, or 10).
        #[arg(short, long, value_name = "SECONDS")]
        time: Option<u64>,
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Wait until containers stop, and print each one's exit code.
    Wait {
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Show a container's published ports (all, or the host port of one).
    Port {
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// A container port, e.g. 80 or 80/tcp.
        #[arg(value_name = "PORT[/PROTO]")]
        private: Option<String>,
    },
    /// Copy files between the host and a running container: berth cp
    /// SRC CONTAINER:DEST, or berth cp CONTAINER:SRC DEST. Symlinks in the
    /// container are copied, never followed.
    Cp {
        /// Keep owners (uid and gid) too, not only modes.
        #[arg(short, long)]
        archive: bool,
        #[arg(value_name = "SRC")]
        source: String,
        #[arg(value_name = "DEST")]
        dest: String,
    },
    /// Make an image of a container: its image plus the files it changed,
    /// running what it runs.
    #[command(
        after_help = "Example:\n  berth commit -c 'CMD [\"httpd\", \"-f\"]' web web:snapshot"
    )]
    Commit {
        /// A Dockerfile line that changes the config: CMD, ENTRYPOINT, ENV,
        /// WORKDIR, USER, EXPOSE or LABEL (repeat for more).
        #[arg(short, long = "change", value_name = "LINE")]
        changes: Vec<String>,
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// The new image's name, e.g. web:snapshot.
        #[arg(value_name = "REPOSITORY[:TAG]")]
        tag: String,
    },
    /// Write a running container's file system as a tar (to stdout, or -o).
    Export {
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Give a container a new name.
    Rename {
        #[arg(value_name = "CONTAINER")]
        container: String,
        #[arg(value_name = "NEW_NAME")]
        new_name: String,
    },
    /// Show a container's processes, with the host's ps (default options: -f).
    Top {
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// Options for ps, e.g. -o pid,args.
        #[arg(
            value_name = "PS_OPTIONS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        ps_options: Vec<String>,
    },
    /// Freeze every process of containers (their cgroup's freezer).
    Pause {
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Thaw containers that pause froze.
    Unpause {
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// List the files a container changed: A added, C changed, D deleted.
    Diff {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Show running containers' CPU, memory and processes (every 2 s).
    Stats {
        /// Print once and exit.
        #[arg(long)]
        no_stream: bool,
        /// Containers to show (default: every running one).
        #[arg(value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Show what happens to containers (create, start, die, destroy, pause,
    /// unpause, rename), as it happens; with --until, up to then.
    #[command(after_help = "Examples:\n  berth events --since 10m --until 0s\n  \
                            berth events --filter event=die --format '{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}'")]
    Events {
        /// From this time: RFC 3339, a date, Unix seconds, or how long ago
        /// (30s, 10m, 2h).
        #[arg(long, value_name = "TIME", value_parser = berth::events::parse_time)]
        since: Option<i128>,
        /// Up to this time, then stop (0s: now).
        #[arg(long, value_name = "TIME", value_parser = berth::events::parse_time)]
        until: Option<i128>,
        /// Only events that match: container=, event=, image=, type=.
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// Print each as TEMPLATE says, e.g. '{{.Action}} {{.Actor.ID}}', or json.
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
    },
    /// Print berth's version, and the kernel's.
    Version,
    /// Show what berth sees: containers, images, cgroups, kernel, root.
    Info,
    /// Disk use, and removing what nothing uses.
    #[command(subcommand)]
    System(SystemCommand),
    /// Print a completion script for a shell, e.g. berth completion bash >
    /// /etc/bash_completion.d/berth.
    Completion {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
    #[command(flatten)]
    Image(ImageCommand),
    #[command(flatten)]
    EngineImage(berth::image_cli::EngineImageCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommands),
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

/// Stage 05's network commands, and the engine's.
#[derive(Subcommand)]
enum NetworkCommands {
    #[command(flatten)]
    Stage(NetworkCommand),
    /// Show networks as JSON: subnet, gateway, bridge, the containers on them.
    Inspect {
        #[arg(value_name = "NETWORK", required = true)]
        names: Vec<String>,
    },
    /// Put a container on one more network: running, at once (as eth1,
    /// eth2...: no default route, no published ports); stopped, when it
    /// next starts. Peers there find it by name, and it finds them.
    Connect {
        #[arg(value_name = "NETWORK")]
        network: String,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Take a container off a network (a running one at once). Taken off
    /// its first network, its next one becomes eth0 when it next starts.
    Disconnect {
        /// Accepted for Docker's sake: berth always disconnects at once.
        #[arg(short, long)]
        force: bool,
        #[arg(value_name = "NETWORK")]
        network: String,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Remove every network no container names (not the default one).
    Prune {
        /// Don't ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show what images and containers take on disk.
    Df,
    /// Remove stopped containers, unused networks, and blobs and layers no
    /// image needs (with -a: every image no container uses).
    Prune {
        /// Also every image no container uses.
        #[arg(short, long)]
        all: bool,
        /// Don't ask.
        #[arg(short, long)]
        force: bool,
    },
    /// As berth info.
    Info,
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
    /// The keys that detach `berth attach` from this container (default
    /// ctrl-p,ctrl-q), e.g. ctrl-a,d.
    #[arg(long, value_name = "KEYS", value_parser = check_detach_keys)]
    detach_keys: Option<String>,
    /// Run it again when it ends (needs -d; its monitor does it):
    /// no, on-failure[:MAX-RETRIES] (a code other than 0), always, or
    /// unless-stopped (for berth, as always). Waits 100 ms before the first
    /// restart, twice as long before each next one (at most a minute; 100 ms
    /// again after a run of 10 s). `berth stop` or `kill` ends it until
    /// `berth start`.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    restart: berth::restart::RestartPolicy,
    /// Name the container: commands and other containers on its network
    /// find it by this name. It is also the hostname inside (unless -h says
    /// otherwise) where it can be one, i.e. has no '_'.
    #[arg(long, value_name = "NAME", value_parser = berth::record::parse_name)]
    name: Option<String>,
    /// The network to join, or `none` for only `lo`. Repeat it to join
    /// several: the first is eth0 (default route, published ports), the
    /// next eth1, and so on.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_NETWORK)]
    network: Vec<String>,
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
    /// The image must be for this platform, OS/ARCH[/VARIANT] (pull one
    /// from a multi-platform image with berth pull --platform).
    #[arg(long, value_name = "OS/ARCH", value_parser = stage04_images::spec::Platform::parse)]
    platform: Option<stage04_images::spec::Platform>,
    #[command(flatten)]
    mounts: MountArgs,
    #[command(flatten)]
    userns: UserNsArgs,
    #[command(flatten)]
    extra: berth::run_flags::ExtraRunArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Name (and tag) of the image, e.g. web:1 (required).
    #[arg(short, long, value_name = "NAME[:TAG]")]
    tag: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile; - reads it from stdin).
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build-time variable declared with ARG.
    #[arg(long = "build-arg", value_name = "NAME=VALUE", value_parser = parse_build_arg)]
    build_args: Vec<(String, String)>,
    /// Run every step, even those with a cached layer.
    #[arg(long)]
    no_cache: bool,
    /// Build this stage of a multi-stage Dockerfile (default: the last).
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Set a label on the image.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_build_arg)]
    labels: Vec<(String, String)>,
    /// Pull every base image again, even one already in the store.
    #[arg(long)]
    pull: bool,
    /// The network of RUN steps: default (berth's default network), none, or
    /// a network's name.
    #[arg(long, value_name = "NETWORK")]
    network: Option<String>,
    /// A file RUN --mount=type=secret may mount (never stored in the image).
    #[arg(long = "secret", value_name = "id=ID,src=FILE", value_parser = parse_secret)]
    secrets: Vec<(String, PathBuf)>,
    /// The platform to build for: this machine's only (RUN steps run
    /// here), e.g. linux/amd64; accepted so that scripts that name it work.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// The directory COPY and ADD take files from.
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
}

fn parse_build_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
}

/// `id=ID,src=FILE` (also `source=`, and `env=` is refused).
fn parse_secret(text: &str) -> Result<(String, PathBuf), String> {
    let mut id = None;
    let mut src = None;
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("id", value)) => id = Some(value.to_string()),
            Some(("src" | "source", value)) => src = Some(PathBuf::from(value)),
            Some(("type", "file")) => {}
            _ => return Err(format!("{field:?}: a secret is id=ID,src=FILE")),
        }
    }
    let src = src.ok_or("a secret needs src=FILE")?;
    let id = id
        .or_else(|| src.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or("a secret needs id=ID")?;
    Ok((id, src))
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

/// What berth exits with when the command line is wrong, as Docker does:
/// 125 is berth's own failure, so a script can tell it from the exit code
/// of the container's command (clap's default would be 2).
const EXIT_USAGE: u8 = 125;

const RUN_EXAMPLES: &str = "Examples:\n  berth run --rm 127.0.0.1:5000/busybox echo hello\n  \
berth run -d --name web -p 8080:80 127.0.0.1:5000/busybox httpd -f -p 80\n  \
berth run -d --name worker --restart on-failure:3 127.0.0.1:5000/busybox sh -c 'work || exit 1'\n  \
berth run -d --name web --restart unless-stopped 127.0.0.1:5000/busybox httpd -f -p 80\n  \
berth run -dit --name shell 127.0.0.1:5000/busybox sh   (then: berth attach shell; leave with Ctrl-P Ctrl-Q)";

const LOGS_EXAMPLES: &str = "Examples:\n  berth logs web\n  berth logs -f --tail 10 web\n  \
berth logs --since 10m --until 2m -t web\n  berth logs --since 2024-05-01T12:00:00Z web 2>/dev/null   (stdout only)\n\n\
Each line is kept as {\"log\":\"text\\n\",\"stream\":\"stdout\",\"time\":\"...\"}; a line longer than \
16 KiB is split. The log is not rotated.";

fn check_detach_keys(text: &str) -> Result<String, String> {
    berth::attach::parse_detach_keys(text).map(|_| text.to_string())
}

/// `--tail N` or `--tail all` (`None`: all).
#[derive(Clone, Copy)]
struct TailCount(Option<usize>);

fn parse_tail(text: &str) -> Result<TailCount, String> {
    match text {
        "all" => Ok(TailCount(None)),
        n => n
            .parse()
            .map(|n| TailCount(Some(n)))
            .map_err(|_| format!("{text:?} is not a number of lines, or all")),
    }
}

const PS_EXAMPLES: &str = "Fields for --format: ID, Image, Command, CreatedAt, RunningFor, Ports, \
State, Status, Names, Labels, Networks.\n\nExamples:\n  berth ps -a -q\n  \
berth ps --filter status=exited --filter label=team=web\n  \
berth ps --format 'table {{.Names}}\\t{{.Status}}'\n  berth ps --format json";

fn main() -> ExitCode {
    let (cli, listing) = match parse_command_line() {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print(); // help and usage errors alike
            return ExitCode::from(if err.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    exit::finish(
        "berth",
        guard(&cli.command).and_then(|()| dispatch(cli, listing)),
    )
}

/// Parse the command line, with Docker's habits for `run`: `-h` is
/// `--hostname` there (help is `--help` only), `-m` is `--memory`. (The
/// stages' `run` options are theirs, so the engine adds the short names.)
fn parse_command_line() -> Result<(Cli, Listing), clap::Error> {
    let mut matches = cli_command().try_get_matches()?;
    let listing = match matches.subcommand() {
        Some(("images", images)) => Listing::from(images),
        Some(("network", network)) => match network.subcommand() {
            Some(("ls", ls)) => Listing::from(ls),
            _ => Listing::default(),
        },
        _ => Listing::default(),
    };
    Ok((Cli::from_arg_matches_mut(&mut matches)?, listing))
}

/// Examples for every command's `--help` (those whose attributes have none).
const EXAMPLES: &[(&[&str], &str)] = &[
    (
        &["exec"],
        "berth exec web ps\n  berth exec -it web sh\n  berth exec -e DEBUG=1 -w /srv -u nobody web env",
    ),
    (
        &["attach"],
        "berth run -dit --name shell IMAGE sh && berth attach shell   (leave with Ctrl-P Ctrl-Q)\n  berth attach --detach-keys ctrl-x shell",
    ),
    (&["start"], "berth start web\n  berth start web db"),
    (&["stop"], "berth stop web\n  berth stop -t 1 web db"),
    (&["kill"], "berth kill web\n  berth kill -s HUP web"),
    (
        &["rm"],
        "berth rm web\n  berth rm -f web   (stop it first)\n  berth rm -v web   (and its anonymous volumes)",
    ),
    (
        &["inspect"],
        "berth inspect web\n  berth inspect web | grep -A 3 '\"monitor\"'",
    ),
    (&["restart"], "berth restart web\n  berth restart -t 1 web"),
    (
        &["wait"],
        "berth wait web   (prints its exit code once it ends)",
    ),
    (&["port"], "berth port web\n  berth port web 80/tcp"),
    (
        &["cp"],
        "berth cp ./site web:/www\n  berth cp web:/etc/hosts ./hosts-of-web\n  berth cp -a web:/data ./backup",
    ),
    (
        &["export"],
        "berth export -o web.tar web\n  berth export web | tar -t | head",
    ),
    (&["rename"], "berth rename web frontend"),
    (&["top"], "berth top web\n  berth top web -o pid,args"),
    (&["pause"], "berth pause web"),
    (&["unpause"], "berth unpause web"),
    (&["diff"], "berth diff web"),
    (&["stats"], "berth stats\n  berth stats --no-stream web"),
    (&["version"], "berth version"),
    (&["info"], "berth info"),
    (&["system"], "berth system df\n  berth system prune -f"),
    (&["system", "df"], "berth system df"),
    (
        &["system", "prune"],
        "berth system prune\n  berth system prune -a -f",
    ),
    (&["system", "info"], "berth system info"),
    (
        &["completion"],
        "berth completion bash > /etc/bash_completion.d/berth\n  berth completion zsh > \"${fpath[1]}/_berth\"",
    ),
    (
        &["build"],
        "berth build -t web:1 ./site\n  berth build -t web:1 -f site/Dockerfile.prod --build-arg VERSION=2 ./site\n  berth build -t app:1 --target runtime --secret id=token,src=token.txt .",
    ),
    (
        &["pull"],
        "berth pull 127.0.0.1:5000/busybox\n  berth pull 127.0.0.1:5000/busybox@sha256:DIGEST\n  berth pull --creds user:secret registry.example/team/app:1",
    ),
    (
        &["images"],
        "berth images\n  berth images -q\n  berth images --format '{{.Repository}}:{{.Tag}} {{.Size}}'",
    ),
    (
        &["load"],
        "berth load busybox.tar\n  berth load --tag mine:1 ./oci-layout",
    ),
    (
        &["rmi"],
        "berth rmi web:1\n  berth rmi 3f2a9c   (by image ID prefix)",
    ),
    (
        &["network"],
        "berth network create shop --subnet 10.88.0.0/24\n  berth network ls\n  berth network rm shop",
    ),
    (
        &["network", "create"],
        "berth network create shop\n  berth network create shop --subnet 10.88.0.0/24",
    ),
    (
        &["network", "ls"],
        "berth network ls\n  berth network ls -q --filter name=shop",
    ),
    (&["network", "rm"], "berth network rm shop"),
    (&["network", "inspect"], "berth network inspect shop"),
    (&["network", "prune"], "berth network prune -f"),
    (
        &["network", "connect"],
        "berth network connect backend web\n  berth exec web ip -o -4 addr show eth1",
    ),
    (
        &["network", "disconnect"],
        "berth network disconnect backend web",
    ),
    (
        &["volume"],
        "berth volume create data\n  berth run -v data:/var/lib/data IMAGE\n  berth volume ls",
    ),
    (
        &["volume", "create"],
        "berth volume create data\n  berth volume create --label team=db data",
    ),
    (
        &["volume", "ls"],
        "berth volume ls\n  berth volume ls -q --filter dangling=true",
    ),
    (&["volume", "inspect"], "berth volume inspect data"),
    (&["volume", "rm"], "berth volume rm data"),
    (
        &["volume", "prune"],
        "berth volume prune -f\n  berth volume prune --all -f",
    ),
];

/// `EXAMPLES` into the commands' help.
fn with_examples(mut command: clap::Command) -> clap::Command {
    for (path, text) in EXAMPLES {
        let text = format!("Examples:\n  {text}");
        command = match path {
            [one] => command.mut_subcommand(*one, |c| c.after_help(text)),
            [one, two] => {
                command.mut_subcommand(*one, |c| c.mut_subcommand(*two, |c| c.after_help(text)))
            }
            _ => command,
        };
    }
    command
}

/// berth's command line: clap's from the types above, with the additions.
fn cli_command() -> clap::Command {
    with_examples(Cli::command())
        .mut_subcommand("images", with_listing_options)
        .mut_subcommand("network", |network| {
            network.mut_subcommand("ls", with_listing_options)
        })
        .mut_subcommand("run", |run| {
            run.disable_help_flag(true)
                .mut_arg("hostname", |hostname| hostname.short('h'))
                .mut_arg("memory", |memory| memory.short('m'))
                .arg(
                    clap::Arg::new("help")
                        .long("help")
                        .help("Print help")
                        .action(clap::ArgAction::Help),
                )
        })
}

/// `-q`, `--format` and `--filter` of the listings that come from the
/// stages (`images`, `network ls`): the engine adds them to the stages'
/// commands, and reads them here.
#[derive(Default)]
struct Listing {
    quiet: bool,
    format: Option<String>,
    filters: Vec<String>,
}

impl Listing {
    fn from(matches: &clap::ArgMatches) -> Listing {
        Listing {
            quiet: matches.get_flag("quiet"),
            format: matches.get_one::<String>("format").cloned(),
            filters: matches
                .get_many::<String>("filter")
                .map(|f| f.cloned().collect())
                .unwrap_or_default(),
        }
    }
}

fn with_listing_options(command: clap::Command) -> clap::Command {
    use clap::{Arg, ArgAction};
    command
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .action(ArgAction::SetTrue)
                .help("Print only the IDs (networks: the names)"),
        )
        .arg(
            Arg::new("format")
                .long("format")
                .value_name("TEMPLATE")
                .help("Print each as TEMPLATE says, e.g. '{{.ID}}', 'table {{.Name}}\\t{{.Subnet}}', or json"),
        )
        .arg(
            Arg::new("filter")
                .short('f')
                .long("filter")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .help("Only those that match: images reference=, id=; networks name=, id="),
        )
}

/// Before anything else: no inherited file reaches a container, and the
/// commands that start or enter one run from a read-only view of berth.
fn guard(command: &Command) -> Result<(), Error> {
    berth::guard::close_inherited_files()?;
    match command {
        Command::Run(_)
        | Command::Exec(_)
        | Command::Start { .. }
        | Command::Restart { .. }
        | Command::Build(_)
        | Command::Monitor { .. } => berth::guard::run_from_read_only_binary(),
        _ => Ok(()),
    }
}

fn dispatch(cli: Cli, listing: Listing) -> Result<u8, Error> {
    // What needs no state: no root either.
    match cli.command {
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli_command(), "berth", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script); // | head is fine
            return Ok(0);
        }
        Command::Version => {
            commands::version();
            return Ok(0);
        }
        Command::EngineImage(command) if command.needs_no_state() => {
            return berth::image_cli::stateless_command(command);
        }
        _ => {}
    }
    checks::require_root("containers, images and networks need root")?;
    let engine = Engine::open(&cli.root)?;
    match cli.command {
        Command::Run(args) => {
            if !args.detach {
                berth::launch::warm_up_cgroup_moves(); // it starts the container itself
            }
            run_command(&engine, args)
        }
        Command::Monitor { ready_fd, id } => {
            berth::launch::warm_up_cgroup_moves();
            let ready = Ready::from_fd(ready_fd)?;
            run::monitor(&engine, &id, ready)
        }
        Command::MonitorFinish { id, code } => run::conclude(&engine, &id, code),
        Command::Attach {
            detach_keys,
            no_stdin,
            sig_proxy,
            container,
        } => {
            let record = engine.containers.find(&container)?;
            let keys = detach_keys.as_deref();
            berth::attach::attach(&engine, &record, keys, no_stdin, sig_proxy)
        }
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
        Command::Ps {
            all,
            quiet,
            format,
            filter,
        } => {
            let filters = Filters::new(&filter, show::PS_FILTERS)?;
            let format = Format::new(quiet, format.as_deref());
            show::ps(&engine, all, &format, &filters).map(|()| 0)
        }
        Command::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            container,
        } => {
            let now = berth::logfile::now_nanos();
            let time = |flag: &str, text: Option<String>| {
                text.map(|t| berth::logfile::parse_time(&t, now))
                    .transpose()
                    .map_err(|e| Error::Other(format!("{flag}: {e}")))
            };
            let options = berth::logfile::Show {
                tail: tail.and_then(|TailCount(n)| n),
                since: time("--since", since)?,
                until: time("--until", until)?,
                timestamps,
            };
            let record = engine.containers.find(&container)?;
            show::logs(&engine, &record, follow, &options).map(|()| 0)
        }
        Command::Inspect { container } => match engine.containers.find(&container) {
            Ok(record) => show::inspect(&engine, &record).map(|()| 0),
            // Docker's inspect takes images too.
            Err(not_a_container) => match berth::image_ops::Details::find(&engine, &container) {
                Ok(_) => berth::image_ops::inspect(&engine, &[container], None).map(|()| 0),
                Err(_) => Err(not_a_container),
            },
        },
        Command::Start { containers } => {
            for_each(&engine, &containers, |record| run::restart(&engine, record))
        }
        Command::Stop { time, containers } => for_each(&engine, &containers, |record| {
            control::stop(&engine, record, time.map(Duration::from_secs))
        }),
        Command::Kill { signal, containers } => for_each(&engine, &containers, |record| {
            control::kill_by_user(&engine, record, signal)
        }),
        Command::Rm {
            force,
            volumes,
            containers,
        } => {
            // What creators killed halfway through left aside goes too (a
            // listing sweeps it as well; finding by name no longer lists).
            engine.containers.sweep_staging();
            for_each(&engine, &containers, |record| {
                control::remove(&engine, record, force, volumes)
            })
        }
        Command::Build(args) => {
            let options = BuildOptions {
                context: args.context,
                dockerfile: args.file,
                tag: args.tag,
                build_args: args.build_args.into_iter().collect(),
                no_cache: args.no_cache,
                target: args.target,
                labels: args.labels,
                pull: args.pull,
                network: args.network,
                secrets: args.secrets.into_iter().collect(),
                platform: args.platform,
            };
            build(&engine, options).map(|_| 0)
        }
        Command::Image(ImageCommand::Rmi { images }) => {
            // Each in turn, as Docker: one that fails doesn't stop the rest.
            let mut code = 0;
            for key in images {
                let removed = berth::image_ops::names_to_remove(&engine, &key).and_then(|image| {
                    berth::image_ops::refuse_in_use(&engine, &image)?;
                    let images = vec![image];
                    image_command(&engine.root, ImageCommand::Rmi { images }, "berth")
                });
                match removed {
                    Ok(0) => {}
                    Ok(failed) => code = failed,
                    Err(err) => {
                        eprintln!("berth: {err}");
                        code = err.exit_code();
                    }
                }
            }
            Ok(code)
        }
        Command::Image(ImageCommand::Images) => {
            let filters = Filters::new(&listing.filters, show::IMAGE_FILTERS)?;
            let format = Format::new(listing.quiet, listing.format.as_deref());
            show::images(&engine, format, &filters).map(|()| 0)
        }
        Command::Image(command) => image_command(&engine.root, command, "berth"),
        Command::EngineImage(command) => berth::image_cli::image_command(&engine, command),
        Command::Network(NetworkCommands::Stage(NetworkCommand::Ls)) => {
            let filters = Filters::new(&listing.filters, show::NETWORK_FILTERS)?;
            let format = Format::new(listing.quiet, listing.format.as_deref());
            show::networks(&engine, format, &filters).map(|()| 0)
        }
        Command::Network(NetworkCommands::Stage(command)) => {
            network_command(&engine.networks, command)
        }
        Command::Network(NetworkCommands::Inspect { names }) => {
            commands::network_inspect(&engine, &names).map(|()| 0)
        }
        Command::Network(NetworkCommands::Connect { network, container }) => {
            let record = engine.containers.find(&container)?;
            berth::connect::connect(&engine, &network, &record).map(|()| 0)
        }
        Command::Network(NetworkCommands::Disconnect {
            network, container, ..
        }) => {
            let record = engine.containers.find(&container)?;
            berth::connect::disconnect(&engine, &network, &record).map(|()| 0)
        }
        Command::Network(NetworkCommands::Prune { force }) => {
            if !force && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                return Err(Error::Other(
                    "network prune removes every network no container names: add -f to go ahead"
                        .into(),
                ));
            }
            commands::network_prune(&engine).map(|()| 0)
        }
        Command::Restart { time, containers } => for_each(&engine, &containers, |record| {
            commands::restart(&engine, record, time.map(Duration::from_secs))
        }),
        Command::Cp {
            archive,
            source,
            dest,
        } => berth::copy::copy(
            &engine,
            berth::copy::Side::parse(&source),
            berth::copy::Side::parse(&dest),
            archive,
        )
        .map(|()| 0),
        Command::Commit {
            changes,
            container,
            tag,
        } => {
            let record = engine.containers.find(&container)?;
            let digest = berth::build::commit_container(&engine, &record, &tag, &changes)?;
            println!("{digest}");
            Ok(0)
        }
        Command::Export { output, container } => match output {
            Some(path) => {
                // Made whole or not at all: written beside, then renamed.
                let partial = path.with_extension("partial");
                let file = std::fs::File::create(&partial)
                    .map_err(|e| Error::io("create", &partial, e))?;
                let written =
                    berth::copy::export(&engine, &container, std::io::BufWriter::new(file));
                match written {
                    Ok(()) => std::fs::rename(&partial, &path)
                        .map_err(|e| Error::io("rename", &partial, e))
                        .map(|()| 0),
                    Err(err) => {
                        let _ = std::fs::remove_file(&partial);
                        Err(err)
                    }
                }
            }
            None => berth::copy::export(&engine, &container, std::io::stdout().lock()).map(|()| 0),
        },
        Command::Events {
            since,
            until,
            filter,
            format,
        } => {
            let filters = Filters::new(&filter, berth::events::FILTERS)?;
            let format = Format::new(false, format.as_deref());
            berth::events::show(&engine, since, until, &filters, &format).map(|()| 0)
        }
        Command::Wait { containers } => {
            for key in &containers {
                let record = engine.containers.find(key)?;
                println!("{}", commands::wait(&engine, &record)?);
            }
            Ok(0)
        }
        Command::Port { container, private } => {
            commands::port(&engine.containers.find(&container)?, private.as_deref()).map(|()| 0)
        }
        Command::Rename {
            container,
            new_name,
        } => commands::rename(&engine, &engine.containers.find(&container)?, &new_name).map(|()| 0),
        Command::Top {
            container,
            ps_options,
        } => commands::top(&engine, &engine.containers.find(&container)?, &ps_options),
        Command::Pause { containers } => for_each(&engine, &containers, |record| {
            commands::pause(&engine, record, true)
        }),
        Command::Unpause { containers } => for_each(&engine, &containers, |record| {
            commands::pause(&engine, record, false)
        }),
        Command::Diff { container } => {
            commands::diff(&engine, &engine.containers.find(&container)?).map(|()| 0)
        }
        Command::Stats {
            no_stream,
            containers,
        } => commands::stats(&engine, &containers, no_stream).map(|()| 0),
        Command::Completion { .. } | Command::Version => unreachable!("answered above"),
        Command::Info | Command::System(SystemCommand::Info) => commands::info(&engine).map(|()| 0),
        Command::System(SystemCommand::Df) => commands::disk_usage(&engine).map(|()| 0),
        Command::System(SystemCommand::Prune { all, force }) => {
            commands::prune(&engine, force, all).map(|()| 0)
        }
        Command::Volume(command) => volume::command(&engine, command),
    }
}

fn run_command(engine: &Engine, args: EngineRunArgs) -> Result<u8, Error> {
    let run = args.run;
    let (extras, mut env) = args.extra.into_extras()?;
    env.extend(run.env); // -e after --env-file: the last one wins
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
    let image = berth::images::resolve(engine, &run.image)?;
    if let Some(platform) = &args.platform {
        berth::image_ops::check_platform(engine, &image, platform)?;
    }
    let spec = Spec {
        image,
        entrypoint: run.entrypoint,
        command,
        env,
        workdir: run.workdir,
        user: run.user,
        hostname: run.hostname,
        memory: run.limits.memory,
        cpu: run.limits.cpus.map(|c| (c.quota_us, c.period_us)),
        pids_limit: run.limits.pids_limit,
        network: args.network[0].clone(), // (clap's default: never empty)
        connected: args.network[1..].to_vec(),
        publish: args.publish,
        auto_remove: args.rm,
        restart: args.restart,
        detach_keys: args.detach_keys,
        detached: args.detach,
        stats: run.stats,
        privileged: args.privileged,
        interactive: args.interactive,
        tty: args.tty,
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        userns: args.userns.userns,
        mounts: args.mounts.into_mounts(),
        extras,
    };
    check_restart(&spec)?;
    let record = run::create(engine, args.name, spec)?;
    if args.detach {
        run::detach(engine, &record)?;
        println!("{}", record.id);
        Ok(0)
    } else {
        run::execute(engine, record, Ready::Nobody)
    }
}

/// `--restart` needs a monitor to do it, and contradicts `--rm`.
fn check_restart(spec: &Spec) -> Result<(), Error> {
    if spec.restart == berth::restart::RestartPolicy::No {
        return Ok(());
    }
    if spec.auto_remove {
        return Err(Error::Other(
            "Conflicting options: cannot specify both --restart and --rm".into(),
        ));
    }
    if !spec.detached {
        return Err(Error::Other(
            "--restart needs -d: the monitor of a detached container runs it again \
             (berth has no daemon to restart one in the foreground)"
                .into(),
        ));
    }
    Ok(())
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
