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

use crate::{Engine, images, login, push};

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
    #[command(after_help = "Examples:\n  berth push 127.0.0.1:5000/web:1\n  \
                            berth push web:1 127.0.0.1:5000/team/web:1\n  \
                            berth push --creds user:secret registry.example/team/web:1")]
    Push {
        /// The image: a name in the store, or an image ID.
        #[arg(value_name = "IMAGE")]
        image: String,
        /// Where to push it (default: the image's own name).
        #[arg(value_name = "DEST")]
        destination: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
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
                    login::config_key(&server)
                );
            } else {
                println!("Not logged in to {}", login::config_key(&server));
            }
            Ok(0)
        }
        _ => Err(Error::Other("this command needs the engine's state".into())),
    }
}

/// Carry out an image command on the engine's store.
pub fn image_command(engine: &Engine, command: EngineImageCommand) -> Result<u8, Error> {
    match command {
        EngineImageCommand::Push {
            image,
            destination,
            registry,
        } => {
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
            )?;
            Ok(0)
        }
        login @ (EngineImageCommand::Login { .. } | EngineImageCommand::Logout { .. }) => {
            stateless_command(login)
        }
    }
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
    if username.is_empty() || password.is_empty() {
        return Err(Error::Other(
            "a login needs a user name and a password".into(),
        ));
    }
    Ok(Credentials { username, password })
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
