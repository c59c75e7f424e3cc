//! The engine's image commands beyond stage 04's `pull`, `images`, `load`
//! and `rmi`: images in and out of the host (`push`, `login`, `logout`,
//! `save`) and looking after them (`tag`, `history`, `image inspect`,
//! `image prune`). `main.rs` flattens [`EngineImageCommand`] into berth's
//! command line and hands it to [`image_command`].

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use stage01_chroot::Error;
use stage04_images::auth::Credentials;
use stage04_images::reference::Reference;
use stage04_images::registry::RegistryOptions;

use crate::archive::{self, ArchiveFormat};
use crate::format::{Filters, Format};
use crate::{Engine, commands, image_ops, images, login, push, show};

/// How to reach a registry and log in to it, as `pull` takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Log in with USER:PASSWORD (otherwise the auth file is consulted).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_creds)]
    pub creds: Option<Credentials>,
    /// A Docker-style config.json with logins (default
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, alias = "authfile", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Allow plain HTTP to this registry (HOST[:PORT]); localhost and
    /// 127.0.0.1 always may.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

impl RegistryArgs {
    fn options(self) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registry,
            credentials: self.creds,
            auth_file: self.auth_file,
        }
    }
}

fn parse_creds(text: &str) -> Result<Credentials, String> {
    Credentials::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EngineImageCommand {
    /// Upload an image to a registry: only the blobs it lacks (others are
    /// mounted from another repository there when they can be), then the
    /// manifest.
    #[command(after_help = PUSH_EXAMPLES)]
    Push(PushArgs),
    /// Give an image one more name (a tag), e.g. the name to push it as.
    #[command(after_help = TAG_EXAMPLES)]
    Tag(TagArgs),
    /// Show how an image was made: its config's history, newest first.
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),
    /// Manage images: inspect, prune, and the image commands by their
    /// `image` names (history, push, tag).
    /// Write images to a tar archive (docker-archive, as `docker save`; or
    /// oci-archive), to a file or stdout.
    #[command(after_help = SAVE_EXAMPLES)]
    Save(SaveArgs),
    #[command(
        subcommand,
        after_help = "Examples:\n  berth image inspect web:1\n  berth image prune -a -f"
    )]
    Image(ImageSubcommand),
    /// Log in to a registry: the login is checked, then saved in Docker's
    /// auth file ($DOCKER_CONFIG/config.json or ~/.docker/config.json, mode
    /// 0600), where pull and push (and Docker and Podman) find it.
    #[command(
        after_help = "Examples:\n  berth login -u user 127.0.0.1:5000   (asks for the password)\n  \
                            echo \"$TOKEN\" | berth login -u user --password-stdin registry.example"
    )]
    Login {
        #[arg(short, long, value_name = "USER")]
        username: Option<String>,
        /// The password (visible in `ps`: prefer --password-stdin).
        #[arg(
            short,
            long,
            value_name = "PASSWORD",
            conflicts_with = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// The auth file to write (default as above).
        #[arg(long, alias = "authfile", value_name = "FILE")]
        auth_file: Option<PathBuf>,
        /// Allow plain HTTP to this registry (HOST[:PORT]).
        #[arg(long, value_name = "HOST")]
        insecure_registry: Vec<String>,
        /// HOST[:PORT] (default: Docker Hub).
        #[arg(value_name = "REGISTRY", default_value = "docker.io")]
        server: String,
    },
    /// Forget the login for a registry (remove it from the auth file).
    #[command(after_help = "Examples:\n  berth logout 127.0.0.1:5000")]
    Logout {
        /// The auth file (default as for login).
        #[arg(long, alias = "authfile", value_name = "FILE")]
        auth_file: Option<PathBuf>,
        /// HOST[:PORT] (default: Docker Hub).
        #[arg(value_name = "REGISTRY", default_value = "docker.io")]
        server: String,
    },
}

const PUSH_EXAMPLES: &str = "Examples:\n  berth push 127.0.0.1:5000/web:1\n  \
    berth push web:1 127.0.0.1:5000/team/web:1\n  \
    berth push --creds user:secret registry.example/team/web:1";
const TAG_EXAMPLES: &str =
    "Examples:\n  berth tag web:1 127.0.0.1:5000/team/web:1\n  berth tag 3f2a9c web:latest";
const HISTORY_EXAMPLES: &str = "Examples:\n  berth history web:1\n  berth history --no-trunc web:1\n  \
    berth history --format '{{.CreatedBy}} {{.Size}}' web:1";

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The image: a name in the store, or an image ID.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Where to push it (default: the image's own name).
    #[arg(value_name = "DEST")]
    pub destination: Option<String>,
    /// Compress the layers as gzip or zstd in the registry (layers stored
    /// otherwise are recompressed; default: as stored).
    #[arg(long, value_name = "FORMAT")]
    pub compression_format: Option<push::Compression>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

const SAVE_EXAMPLES: &str = "Examples:\n  berth save -o web.tar web:1 db:2\n  \
    berth save --format oci-archive -o web-oci.tar web:1\n  \
    berth save web:1 | ssh other-host berth load";

#[derive(Debug, Clone, clap::Args)]
pub struct SaveArgs {
    /// Write to FILE (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// docker-archive (as `docker save`) or oci-archive (a tar of an OCI layout).
    #[arg(long, value_name = "FORMAT", default_value = "docker-archive")]
    pub format: ArchiveFormat,
    /// The images: names, image IDs or unique ID prefixes.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TagArgs {
    /// The image: a name, an image ID or a unique ID prefix.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new name, NAME[:TAG].
    #[arg(value_name = "TARGET")]
    pub target: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Times as "2 hours ago" (true) or RFC 3339 (false).
    #[arg(short = 'H', long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't shorten the IMAGE and CREATED BY columns.
    #[arg(long)]
    pub no_trunc: bool,
    /// Print only the image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print each step as TEMPLATE says (fields ID, CreatedAt,
    /// CreatedSince, CreatedBy, Size, Comment), or json.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// The image: a name, an image ID or a unique ID prefix.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageSubcommand {
    /// Show images in Docker's JSON shape (Id, RepoTags, RepoDigests,
    /// Created, Config, Architecture, Os, Size, RootFS...).
    #[command(after_help = "Examples:\n  berth image inspect web:1\n  \
                            berth image inspect --format '{{.Id}} {{.Config.Cmd}}' web:1")]
    Inspect {
        /// Print TEMPLATE filled in from each image, e.g. '{{.Id}}',
        /// '{{json .Config}}', '{{.RootFS.Layers}}'.
        #[arg(short, long, value_name = "TEMPLATE")]
        format: Option<String>,
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
    },
    /// Remove what no image name reaches (dangling images, unused blobs and
    /// layers); with -a, every image no container uses too.
    #[command(after_help = "Examples:\n  berth image prune -f\n  berth image prune -a -f")]
    Prune {
        /// Also remove every image no container uses.
        #[arg(short, long)]
        all: bool,
        /// Don't ask first.
        #[arg(short, long)]
        force: bool,
    },
    /// As `berth history`.
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),
    /// As `berth push`.
    #[command(after_help = PUSH_EXAMPLES)]
    Push(PushArgs),
    /// As `berth tag`.
    #[command(after_help = TAG_EXAMPLES)]
    Tag(TagArgs),
    /// As `berth save`.
    #[command(after_help = SAVE_EXAMPLES)]
    Save(SaveArgs),
    /// As `berth images`.
    #[command(
        after_help = "Examples:\n  berth image ls\n  berth image ls -q --filter reference=web"
    )]
    Ls {
        /// Print only the IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Print each image as TEMPLATE says (fields Repository, Tag, ID,
        /// Digest, Size), or json.
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
        /// Only images that match: reference=, id=.
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// As `berth rmi`.
    #[command(after_help = "Examples:\n  berth image rm web:1\n  berth image rm 3f2a9c")]
    Rm {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// As `berth pull`.
    #[command(after_help = "Examples:\n  berth image pull 127.0.0.1:5000/busybox")]
    Pull(stage04_images::cli::PullArgs),
    /// As `berth load`.
    #[command(after_help = "Examples:\n  berth image load -i web.tar")]
    Load {
        /// The archive (default: stdin).
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Name to tag the image with, when the archive carries none.
        #[arg(long, value_name = "NAME")]
        tag: Option<String>,
    },
}

impl EngineImageCommand {
    /// Whether the command works without root and the engine's state.
    pub fn needs_no_state(&self) -> bool {
        matches!(
            self,
            EngineImageCommand::Login { .. } | EngineImageCommand::Logout { .. }
        )
    }
}

/// Commands that need no engine state: `login`, `logout`.
pub fn stateless_command(command: EngineImageCommand) -> Result<u8, Error> {
    match command {
        EngineImageCommand::Login {
            username,
            password,
            password_stdin,
            auth_file,
            insecure_registry,
            server,
        } => {
            let credentials = ask_login(username, password, password_stdin)?;
            let path = login::config_path(auth_file)?;
            login::login(&server, credentials, insecure_registry, &path)?;
            println!("Login Succeeded");
            Ok(0)
        }
        EngineImageCommand::Logout { auth_file, server } => {
            let path = login::config_path(auth_file)?;
            if login::logout(&server, &path)? {
                println!(
                    "Removing login credentials for {}",
                    stage04_images::auth::config_key(&server)
                );
            } else {
                println!(
                    "Not logged in to {}",
                    stage04_images::auth::config_key(&server)
                );
            }
            Ok(0)
        }
        _ => Err(Error::Other("this command needs the engine's state".into())),
    }
}

/// Carry out an image command on the engine's store.
pub fn image_command(engine: &Engine, command: EngineImageCommand) -> Result<u8, Error> {
    match command {
        EngineImageCommand::Push(args) | EngineImageCommand::Image(ImageSubcommand::Push(args)) => {
            push_image(engine, args)
        }
        EngineImageCommand::Tag(args) | EngineImageCommand::Image(ImageSubcommand::Tag(args)) => {
            image_ops::tag(engine, &args.source, &args.target).map(|()| 0)
        }
        EngineImageCommand::History(args)
        | EngineImageCommand::Image(ImageSubcommand::History(args)) => {
            let format = Format::new(args.quiet, args.format.as_deref());
            image_ops::history(engine, &args.image, &format, args.no_trunc, args.human).map(|()| 0)
        }
        EngineImageCommand::Save(args) | EngineImageCommand::Image(ImageSubcommand::Save(args)) => {
            archive::save(engine, &args.images, args.format, args.output.as_deref()).map(|()| 0)
        }
        EngineImageCommand::Image(ImageSubcommand::Ls {
            quiet,
            format,
            filter,
        }) => {
            let filters = Filters::new(&filter, show::IMAGE_FILTERS)?;
            show::images(engine, Format::new(quiet, format.as_deref()), &filters).map(|()| 0)
        }
        EngineImageCommand::Image(ImageSubcommand::Rm { image }) => {
            let image = image_ops::names_to_remove(engine, &image)?;
            image_ops::refuse_in_use(engine, &image)?;
            stage04_images::cli::remove_image(&engine.root, &image, "berth")
        }
        EngineImageCommand::Image(ImageSubcommand::Pull(args)) => {
            stage04_images::cli::pull_image(&engine.root, args)
        }
        EngineImageCommand::Image(ImageSubcommand::Load { input, tag }) => {
            let command = stage04_images::cli::ImageCommand::Load {
                path: None,
                input,
                tag,
            };
            stage04_images::cli::image_command(&engine.root, command, "berth")
        }
        EngineImageCommand::Image(ImageSubcommand::Inspect { format, images }) => {
            image_ops::inspect(engine, &images, format.as_deref()).map(|()| 0)
        }
        EngineImageCommand::Image(ImageSubcommand::Prune { all, force }) => {
            let what = match all {
                true => "every image no container uses, and",
                false => "dangling images:",
            };
            let question =
                format!("This removes {what} the blobs and layers no image needs. Go on?");
            if force || commands::confirm(&question)? {
                image_ops::prune(engine, all)?;
            }
            Ok(0)
        }
        login @ (EngineImageCommand::Login { .. } | EngineImageCommand::Logout { .. }) => {
            stateless_command(login)
        }
    }
}

fn push_image(engine: &Engine, args: PushArgs) -> Result<u8, Error> {
    let PushArgs {
        image,
        destination,
        compression_format,
        registry,
    } = args;
    let name = images::resolve(engine, &image)?;
    let source: Reference = name.parse().map_err(|_| {
        Error::Other(format!(
            "{image} has no name to push it as: give one (berth push {image} HOST/NAME:TAG)"
        ))
    })?;
    let destination: Reference = match destination {
        Some(destination) => destination.parse()?,
        None => source.clone(),
    };
    let store = engine.root.store()?;
    push::push(
        &store,
        &source.to_string(),
        &destination,
        &registry.options(),
        compression_format,
    )?;
    Ok(0)
}

/// The login from the flags, asking on the terminal for what is missing.
fn ask_login(
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> Result<Credentials, Error> {
    let stdin = std::io::stdin();
    let username = match username {
        Some(username) => username,
        None if stdin.is_terminal() && !password_stdin => {
            eprint!("Username: ");
            read_line(&mut stdin.lock())?
        }
        None => {
            return Err(Error::Other(
                "give the user name with -u USER (stdin is not a terminal to ask on)".into(),
            ));
        }
    };
    let password = match password {
        Some(password) => password,
        None if password_stdin => {
            let mut text = String::new();
            stdin
                .lock()
                .read_to_string(&mut text)
                .map_err(|e| Error::Other(format!("reading the password from stdin: {e}")))?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        None if stdin.is_terminal() => read_password()?,
        None => {
            return Err(Error::Other(
                "give the password with --password-stdin (or -p PASSWORD)".into(),
            ));
        }
    };
    login::credentials(username, password)
}

fn read_line(input: &mut impl BufRead) -> Result<String, Error> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| Error::Other(format!("reading from the terminal: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Ask for the password with the terminal's echo off.
fn read_password() -> Result<String, Error> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("Password: ");
    let saved = tcgetattr(&stdin).map_err(|e| Error::Other(format!("tcgetattr: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
        .map_err(|e| Error::Other(format!("tcsetattr: {e}")))?;
    let password = read_line(&mut stdin.lock());
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    password
}
