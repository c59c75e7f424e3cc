//! Reading a Dockerfile: lines into stages of instructions, and
//! `$VARIABLES` into their values, the way BuildKit's frontend does.
//!
//! A Dockerfile is parser directives (`# escape=`), then optional ARGs
//! (usable in FROM lines only), then stages: each begins with
//! `FROM image [AS name]`. Lines end early with the escape character
//! (`\`), and `RUN`, `COPY` and `ADD` take here-documents (`<<EOF` ...
//! `EOF`) from the lines that follow. Every mistake is reported as
//! `Dockerfile:LINE:COLUMN: what is wrong`.

use std::collections::BTreeMap;

use stage01_chroot::Error;

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// ARGs before the first FROM: their values can be used in FROM lines.
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
}

/// `FROM base [AS name]` and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Lowercase, as Docker compares stage names.
    pub name: Option<String>,
    /// The image (or an earlier stage's name), before `$ARG` substitution.
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    pub text: String,
    pub steps: Vec<Step>,
}

/// One instruction, its line number, and its text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub instruction: Instruction,
    /// `RUN echo hi`, for messages and the build cache.
    pub text: String,
}

/// Exec form `["prog", "arg"]`, or shell form run by the SHELL in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Copy(Copy),
    /// Like COPY, but a local tar archive is unpacked at `dest`.
    Add(Copy),
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    Cmd(Command),
    Entrypoint(Command),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    /// Directories that get a volume of their own in every container.
    Volume(Vec<String>),
    /// The shell for later shell-form RUN, CMD and ENTRYPOINT.
    Shell(Vec<String>),
    /// `None`: `HEALTHCHECK NONE`, no check even if the base had one.
    Healthcheck(Option<Health>),
    StopSignal(String),
    /// An instruction kept in the image for builds FROM it.
    OnBuild(String),
    Maintainer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    pub mounts: Vec<Mount>,
    /// `--network=none|default|host`; `None`: the build's default.
    pub network: Option<String>,
}

/// A `RUN --mount=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    pub target: String,
    /// `source=`: a path in the context or in `from`.
    pub source: Option<String>,
    /// `from=`: a stage or an image.
    pub from: Option<String>,
    /// `id=`: a cache's or a secret's name.
    pub id: Option<String>,
    pub readwrite: bool,
    /// `required=true`: a missing secret is an error.
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Secret,
    Tmpfs,
}

/// COPY's and ADD's sources and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from=stage|image|index`.
    pub from: Option<String>,
    /// `--chown=user[:group]`, names or numbers.
    pub chown: Option<String>,
    /// `--chmod=755`.
    pub chmod: Option<u32>,
    /// `--link`: accepted; every berth COPY layer is independent already.
    pub link: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path or glob in the context (or in `--from`).
    Path(String),
    /// `COPY <<NAME /dest`: a file named NAME with this content.
    Inline {
        name: String,
        content: String,
        /// Unquoted here-documents get `$VARIABLES` expanded.
        expand: bool,
    },
}

/// HEALTHCHECK's command and options, times in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// `["CMD", ...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<u64>,
}

/// A mistake at a place in the file.
struct Mistake {
    line: usize,
    column: usize,
    message: String,
}

/// A logical line: the instruction, its arguments, and where they start.
struct Line {
    line: usize,
    /// Column (1-based) where the arguments start, for messages.
    column: usize,
    keyword: String,
    rest: String,
    text: String,
    heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone)]
struct Heredoc {
    name: String,
    content: String,
    expand: bool,
}

// ANCHOR: parse
/// Parse a Dockerfile; `file` names it in messages (`Dockerfile:3:5: ...`).
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, Error> {
    parse_lines(text)
        .map_err(|m| Error::Other(format!("{file}:{}:{}: {}", m.line, m.column, m.message)))
}
// ANCHOR_END: parse

fn parse_lines(text: &str) -> Result<Dockerfile, Mistake> {
    let mut dockerfile = Dockerfile {
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    let lines = logical_lines(text)?;
    if lines.is_empty() {
        return Err(Mistake {
            line: 1,
            column: 1,
            message: "the Dockerfile has no instructions".into(),
        });
    }
    for line in lines {
        let at = |message: String| Mistake {
            line: line.line,
            column: line.column,
            message,
        };
        if line.keyword == "FROM" {
            dockerfile.stages.push(stage(&line)?);
            continue;
        }
        let instruction = instruction(&line)?;
        match (dockerfile.stages.last_mut(), instruction) {
            (Some(stage), instruction) => stage.steps.push(Step {
                line: line.line,
                instruction,
                text: line.text.clone(),
            }),
            (None, Instruction::Arg(args)) => dockerfile.global_args.extend(args),
            (None, _) => {
                return Err(at(format!(
                    "{} before the first FROM: a Dockerfile starts with FROM (only ARG may come before it)",
                    line.keyword
                )));
            }
        }
    }
    if dockerfile.stages.is_empty() {
        return Err(Mistake {
            line: 1,
            column: 1,
            message: "the Dockerfile has no FROM".into(),
        });
    }
    Ok(dockerfile)
}

/// `FROM [--platform=P] image [AS name]`.
fn stage(line: &Line) -> Result<Stage, Mistake> {
    let (flags, rest) = flags(line, &["platform"])?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let name = match words.as_slice() {
        [_] => None,
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                return Err(mistake(
                    line,
                    name,
                    format!("{name:?} is not a stage name (letters, digits, _ - . from a letter)"),
                ));
            }
            Some(name.to_ascii_lowercase())
        }
        [] => return Err(mistake(line, "", "FROM needs an image".into())),
        _ => {
            return Err(mistake(
                line,
                "",
                format!("FROM takes an image and maybe `AS name`, not {rest:?}"),
            ));
        }
    };
    Ok(Stage {
        name,
        base: words[0].to_string(),
        platform: flags.get("platform").cloned(),
        line: line.line,
        text: line.text.clone(),
        steps: Vec::new(),
    })
}

/// A mistake at `word` in the line (at its arguments if `word` is absent).
fn mistake(line: &Line, word: &str, message: String) -> Mistake {
    let column = match word.is_empty() {
        true => None,
        false => line.rest.find(word),
    };
    Mistake {
        line: line.line,
        column: line.column + column.unwrap_or(0),
        message,
    }
}

/// The leading `--name=value` options of an instruction, and the rest.
fn flags<'a>(
    line: &'a Line,
    allowed: &[&str],
) -> Result<(BTreeMap<String, String>, &'a str), Mistake> {
    let mut found = BTreeMap::new();
    let mut rest = line.rest.as_str();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..end];
        let (name, value) = word.split_once('=').unwrap_or((word, ""));
        if !allowed.contains(&name) {
            let known = match allowed.is_empty() {
                true => "none".to_string(),
                false => allowed
                    .iter()
                    .map(|a| format!("--{a}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            return Err(mistake(
                line,
                &format!("--{word}"),
                format!("{} has no option --{name} (it knows {known})", line.keyword),
            ));
        }
        // `--mount` may come more than once: the values add up, one a line.
        found
            .entry(name.to_string())
            .and_modify(|v: &mut String| {
                v.push('\n');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
        rest = after[end..].trim_start();
    }
    Ok((found, rest))
}

/// Parser directives (`# escape=`), then logical lines: comments and blank
/// lines dropped, continued lines joined, here-documents taken in.
fn logical_lines(text: &str) -> Result<Vec<Line>, Mistake> {
    let physical: Vec<&str> = text.lines().collect();
    let escape = escape_directive(&physical);
    let mut lines = Vec::new();
    let mut i = 0;
    while i < physical.len() {
        let first = physical[i];
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let indent = first.len() - trimmed.len();
        let mut joined = String::new();
        let mut first_line = true;
        while let Some(raw) = physical.get(i) {
            i += 1;
            let mut piece = raw.trim_end();
            if first_line {
                piece = piece.trim_start();
                first_line = false;
            } else if piece.trim_start().is_empty() || piece.trim_start().starts_with('#') {
                continue; // comments and blank lines inside a continued line
            }
            match piece.strip_suffix(escape) {
                Some(part) => joined.push_str(part),
                None => {
                    joined.push_str(piece);
                    break;
                }
            }
        }
        let joined = joined.trim().to_string();
        let keyword_end = joined.find(char::is_whitespace).unwrap_or(joined.len());
        let keyword = joined[..keyword_end].to_ascii_uppercase();
        let rest = joined[keyword_end..].trim_start().to_string();
        let column = indent + 1 + joined.len() - rest.len();
        let mut line = Line {
            line: start,
            column,
            keyword,
            rest,
            text: joined.clone(),
            heredocs: Vec::new(),
        };
        if matches!(line.keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip_tabs, expand) in heredoc_markers(&line.rest) {
                let mut content = String::new();
                loop {
                    let Some(raw) = physical.get(i) else {
                        return Err(Mistake {
                            line: start,
                            column,
                            message: format!(
                                "the here-document <<{name} has no line {name} to end it"
                            ),
                        });
                    };
                    i += 1;
                    let body = match strip_tabs {
                        true => raw.trim_start_matches('\t'),
                        false => raw,
                    };
                    if body == name {
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                line.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                });
            }
        }
        lines.push(line);
    }
    Ok(lines)
}

/// `# escape=`` ` at the top changes the line-continuation character.
fn escape_directive(lines: &[&str]) -> char {
    for line in lines {
        let Some(directive) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = directive.split_once('=') else {
            break;
        };
        if key.trim().eq_ignore_ascii_case("escape") && value.trim() == "`" {
            return '`';
        }
    }
    '\\'
}

/// The `<<EOF`, `<<-EOF`, `<<"EOF"` markers in a line: each name, whether
/// leading tabs are stripped, and whether variables expand (unquoted).
fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut found = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while let Some(at) = rest[i..].find("<<") {
        let mut j = i + at + 2;
        if bytes.get(j) == Some(&b'<') {
            i = j + 1; // `<<<` is a here-string, not a here-document
            continue;
        }
        let strip_tabs = bytes.get(j) == Some(&b'-');
        if strip_tabs {
            j += 1;
        }
        let quote = bytes.get(j).copied().filter(|b| *b == b'"' || *b == b'\'');
        if quote.is_some() {
            j += 1;
        }
        let name_len = rest[j..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - j);
        if name_len > 0 {
            found.push((
                rest[j..j + name_len].to_string(),
                strip_tabs,
                quote.is_none(),
            ));
        }
        // Past the name, or past one whole character (which may take more
        // than one byte) when there was none.
        i = j + match name_len {
            0 => rest[j..].chars().next().map_or(1, char::len_utf8),
            n => n,
        };
        if i >= rest.len() {
            break;
        }
    }
    found
}

fn instruction(line: &Line) -> Result<Instruction, Mistake> {
    let keyword = line.keyword.as_str();
    let rest = line.rest.as_str();
    let needs = |what: &str| match rest.is_empty() {
        true => Err(mistake(line, "", format!("{keyword} needs {what}"))),
        false => Ok(()),
    };
    let no_flags = || flags(line, &[]).map(|_| ());
    Ok(match keyword {
        "RUN" => {
            let (flags, rest) = flags(line, &["mount", "network", "security"])?;
            if rest.is_empty() {
                return Err(mistake(line, "", "RUN needs a command".into()));
            }
            let mounts = match flags.get("mount") {
                Some(all) => all
                    .lines()
                    .map(|m| mount(m).map_err(|e| mistake(line, m, e)))
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            let network = flags.get("network").cloned();
            if let Some(n) = &network
                && !["none", "default", "host"].contains(&n.as_str())
            {
                return Err(mistake(
                    line,
                    "--network",
                    format!("RUN --network={n}: it is none, default or host"),
                ));
            }
            if flags.get("security").is_some_and(|s| s != "sandbox") {
                return Err(mistake(
                    line,
                    "--security",
                    "RUN --security=insecure needs a privileged builder; berth builds sandboxed"
                        .into(),
                ));
            }
            Instruction::Run(Run {
                command: run_command(rest, &line.heredocs),
                mounts,
                network,
            })
        }
        "CMD" => {
            no_flags()?;
            Instruction::Cmd(command(rest))
        }
        "ENTRYPOINT" => {
            no_flags()?;
            Instruction::Entrypoint(command(rest))
        }
        "COPY" | "ADD" => {
            let allowed: &[&str] = match keyword {
                "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude"],
                _ => &[
                    "chown",
                    "chmod",
                    "link",
                    "checksum",
                    "keep-git-dir",
                    "exclude",
                ],
            };
            let (flags, rest) = flags(line, allowed)?;
            if flags.contains_key("parents") || flags.contains_key("exclude") {
                return Err(mistake(
                    line,
                    "--",
                    format!(
                        "{keyword} --parents and --exclude are labs features berth does not build"
                    ),
                ));
            }
            let mut words = match json_array(rest) {
                Some(words) => words,
                None => rest.split_whitespace().map(String::from).collect(),
            };
            if words.len() < 2 {
                return Err(mistake(
                    line,
                    "",
                    format!("{keyword} needs a source and a destination"),
                ));
            }
            let dest = words.pop().unwrap_or_default();
            let sources = words
                .into_iter()
                .map(|word| inline_source(&word, &line.heredocs))
                .collect();
            let chmod = match flags.get("chmod") {
                Some(mode) => Some(
                    u32::from_str_radix(mode, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            mistake(
                                line,
                                "--chmod",
                                format!("--chmod={mode}: an octal mode such as 755"),
                            )
                        })?,
                ),
                None => None,
            };
            let copy = Copy {
                sources,
                dest,
                from: flags.get("from").cloned(),
                chown: flags.get("chown").cloned(),
                chmod,
                link: flags.contains_key("link"),
            };
            match keyword {
                "COPY" => Instruction::Copy(copy),
                _ => Instruction::Add(copy),
            }
        }
        "ENV" => {
            needs("NAME=VALUE")?;
            Instruction::Env(pairs(rest).map_err(|e| mistake(line, "", e))?)
        }
        "LABEL" => {
            needs("KEY=VALUE")?;
            Instruction::Label(pairs(rest).map_err(|e| mistake(line, "", e))?)
        }
        "ARG" => {
            needs("a name")?;
            let args = words(rest)
                .into_iter()
                .map(|word| match word.split_once('=') {
                    Some((name, default)) => (name.to_string(), Some(default.to_string())),
                    None => (word, None),
                })
                .collect();
            Instruction::Arg(args)
        }
        "WORKDIR" => {
            needs("a directory")?;
            Instruction::Workdir(rest.to_string())
        }
        "USER" => {
            needs("a user")?;
            Instruction::User(rest.to_string())
        }
        "EXPOSE" => {
            needs("a port")?;
            Instruction::Expose(rest.split_whitespace().map(String::from).collect())
        }
        "VOLUME" => {
            needs("a directory")?;
            Instruction::Volume(match json_array(rest) {
                Some(dirs) => dirs,
                None => rest.split_whitespace().map(String::from).collect(),
            })
        }
        "SHELL" => {
            Instruction::Shell(json_array(rest).filter(|s| !s.is_empty()).ok_or_else(|| {
                mistake(
                    line,
                    "",
                    "SHELL takes a JSON array, e.g. [\"/bin/bash\", \"-c\"]".into(),
                )
            })?)
        }
        "HEALTHCHECK" => Instruction::Healthcheck(healthcheck(line)?),
        "STOPSIGNAL" => {
            needs("a signal")?;
            Instruction::StopSignal(rest.to_string())
        }
        "ONBUILD" => {
            needs("an instruction")?;
            let inner = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            if ["ONBUILD", "FROM", "MAINTAINER"].contains(&inner.as_str()) {
                return Err(mistake(line, "", format!("ONBUILD {inner} is not allowed")));
            }
            Instruction::OnBuild(rest.to_string())
        }
        "MAINTAINER" => {
            needs("a name")?;
            Instruction::Maintainer(rest.to_string())
        }
        other => {
            return Err(Mistake {
                line: line.line,
                column: line.column.saturating_sub(other.len() + 1).max(1),
                message: format!(
                    "unknown instruction {other} (a Dockerfile has FROM, RUN, COPY, ADD, ENV, ARG, \
                     WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL, VOLUME, SHELL, HEALTHCHECK, \
                     STOPSIGNAL, ONBUILD, MAINTAINER)"
                ),
            });
        }
    })
}

/// RUN's command: here-documents become part of the shell script, and a
/// RUN that is only `<<EOF` runs the document itself.
fn run_command(rest: &str, heredocs: &[Heredoc]) -> Command {
    if heredocs.is_empty() {
        return command(rest);
    }
    if let [only] = heredocs
        && heredoc_markers(rest).len() == 1
        && rest
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(['"', '\''])
            == only.name
    {
        return Command::Shell(only.content.clone());
    }
    let mut script = format!("{rest}\n");
    for doc in heredocs {
        script.push_str(&doc.content);
        script.push_str(&doc.name);
        script.push('\n');
    }
    Command::Shell(script)
}

/// A COPY source `<<NAME` is the here-document NAME.
fn inline_source(word: &str, heredocs: &[Heredoc]) -> Source {
    let name = word
        .strip_prefix("<<")
        .map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']));
    match name.and_then(|name| heredocs.iter().find(|d| d.name == name)) {
        Some(doc) => Source::Inline {
            name: doc.name.clone(),
            content: doc.content.clone(),
            expand: doc.expand,
        },
        None => Source::Path(word.to_string()),
    }
}

/// `--mount=type=cache,target=/root/.cache,id=pip`.
fn mount(text: &str) -> Result<Mount, String> {
    let mut mount = Mount {
        kind: MountKind::Bind,
        target: String::new(),
        source: None,
        from: None,
        id: None,
        readwrite: false,
        required: false,
    };
    for field in text.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => {
                mount.kind = match value {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "secret" => MountKind::Secret,
                    "tmpfs" => MountKind::Tmpfs,
                    "ssh" => {
                        return Err(
                            "--mount=type=ssh needs an SSH agent berth does not forward".into()
                        );
                    }
                    other => {
                        return Err(format!(
                            "--mount type={other}: bind, cache, secret or tmpfs"
                        ));
                    }
                }
            }
            "target" | "dst" | "destination" => mount.target = value.to_string(),
            "source" | "src" => mount.source = Some(value.to_string()),
            "from" => mount.from = Some(value.to_string()),
            "id" => mount.id = Some(value.to_string()),
            "rw" | "readwrite" => mount.readwrite = value != "false",
            "ro" | "readonly" => mount.readwrite = value == "false",
            "required" => mount.required = value != "false",
            "sharing" | "mode" | "uid" | "gid" | "size" | "env" => {}
            other => return Err(format!("--mount has no field {other:?}")),
        }
    }
    if mount.kind == MountKind::Secret && mount.target.is_empty() {
        let id = mount
            .id
            .clone()
            .or_else(|| mount.source.clone())
            .unwrap_or_default();
        if id.is_empty() {
            return Err("--mount=type=secret needs id=".into());
        }
        mount.id = Some(id.clone());
        mount.target = format!("/run/secrets/{id}");
    }
    if mount.target.is_empty() {
        return Err(format!("--mount={text}: target= is missing"));
    }
    if mount.kind == MountKind::Cache {
        mount.readwrite = true;
    }
    Ok(mount)
}

/// `HEALTHCHECK [--interval=30s ...] CMD command` or `HEALTHCHECK NONE`.
fn healthcheck(line: &Line) -> Result<Option<Health>, Mistake> {
    let options = [
        "interval",
        "timeout",
        "start-period",
        "start-interval",
        "retries",
    ];
    let (flags, rest) = flags(line, &options)?;
    if rest.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let Some(cmd) = rest
        .get(..3)
        .filter(|k| k.eq_ignore_ascii_case("cmd"))
        .map(|_| rest[3..].trim())
        .filter(|c| !c.is_empty())
    else {
        return Err(mistake(
            line,
            "",
            "HEALTHCHECK takes NONE or CMD command".into(),
        ));
    };
    let mut health = Health {
        test: match command(cmd) {
            Command::Exec(words) => [vec!["CMD".to_string()], words].concat(),
            Command::Shell(script) => vec!["CMD-SHELL".into(), script],
        },
        ..Health::default()
    };
    for (name, value) in &flags {
        let bad = |what: &str| {
            mistake(
                line,
                &format!("--{name}"),
                format!("--{name}={value}: {what}"),
            )
        };
        if name == "retries" {
            health.retries = Some(value.parse().map_err(|_| bad("a whole number"))?);
            continue;
        }
        let nanos = duration(value).ok_or_else(|| bad("a duration such as 30s or 1m30s"))?;
        match name.as_str() {
            "interval" => health.interval = Some(nanos),
            "timeout" => health.timeout = Some(nanos),
            "start-period" => health.start_period = Some(nanos),
            _ => health.start_interval = Some(nanos),
        }
    }
    Ok(Some(health))
}

/// A Go duration (`1m30s`, `500ms`, `2h`) in nanoseconds.
pub fn duration(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = text;
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += (number * scale) as u64;
    }
    Some(total)
}

/// Exec form `["prog", "arg"]` as it is; anything else is shell form.
fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(words) => Command::Exec(words),
        None => Command::Shell(rest.to_string()),
    }
}

fn json_array(text: &str) -> Option<Vec<String>> {
    text.starts_with('[')
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

/// `A=1 B="two words"`, or the old `ENV NAME the rest is the value`.
fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let first = text.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (name, value) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        return Ok(vec![(name.to_string(), value.trim().to_string())]);
    }
    words(text)
        .into_iter()
        .map(|word| {
            word.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{word:?} is not NAME=VALUE"))
        })
        .collect()
}

/// Split on blanks outside quotes; quotes and backslashes are removed.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut chars = text.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => {
                current.extend(chars.next());
                in_word = true;
            }
            ('"' | '\'', None) => {
                quote = Some(c);
                in_word = true;
            }
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (c, _) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Only the config-changing instructions, one a line (`commit -c`).
pub fn parse_changes(text: &str) -> Result<Vec<Step>, Error> {
    let dockerfile = parse("change", &format!("FROM scratch\n{text}\n"))?;
    Ok(dockerfile
        .stages
        .into_iter()
        .flat_map(|s| s.steps)
        .collect())
}

// ANCHOR: substitute
/// Replace `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alternative}`
/// with values from `vars` (ENV and ARG so far); `\$` is a plain `$`.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => out.extend(chars.next()),
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let inner: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(&expand_braced(&inner, vars));
            }
            '$' if chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') =>
            {
                let mut name = String::new();
                while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    name.push(c);
                }
                out.push_str(vars.get(&name).map_or("", String::as_str));
            }
            c => out.push(c),
        }
    }
    out
}
// ANCHOR_END: substitute

fn expand_braced(inner: &str, vars: &BTreeMap<String, String>) -> String {
    let value = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
    if let Some((name, default)) = inner.split_once(":-") {
        return value(name).unwrap_or_else(|| substitute(default, vars));
    }
    if let Some((name, alternative)) = inner.split_once(":+") {
        return value(name).map_or(String::new(), |_| substitute(alternative, vars));
    }
    vars.get(inner).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Instruction> {
        let file = parse("Dockerfile", text).unwrap();
        file.stages
            .into_iter()
            .flat_map(|s| s.steps)
            .map(|s| s.instruction)
            .collect()
    }

    #[test]
    fn instructions_in_both_forms() {
        let file = parse(
            "Dockerfile",
            "# a comment\nARG BASE=busybox\nFROM $BASE\n\nRUN echo one && \\\n    echo two\n\
             CMD [\"httpd\", \"-f\"]\nENTRYPOINT /bin/sh\nCOPY a b /dest/\n\
             ENV A=1 B=\"two words\"\nENV OLD style value\nlabel version=1\nEXPOSE 80 53/udp\n\
             VOLUME /data /logs\nVOLUME [\"/srv\"]\n",
        )
        .unwrap();
        assert_eq!(
            file.global_args,
            vec![("BASE".into(), Some("busybox".into()))]
        );
        let stage = &file.stages[0];
        assert_eq!(stage.base, "$BASE");
        let instructions: Vec<_> = stage.steps.iter().map(|s| s.instruction.clone()).collect();
        assert_eq!(
            instructions,
            vec![
                Instruction::Run(Run {
                    command: Command::Shell("echo one &&     echo two".into()),
                    mounts: vec![],
                    network: None
                }),
                Instruction::Cmd(Command::Exec(vec!["httpd".into(), "-f".into()])),
                Instruction::Entrypoint(Command::Shell("/bin/sh".into())),
                Instruction::Copy(Copy {
                    sources: vec![Source::Path("a".into()), Source::Path("b".into())],
                    dest: "/dest/".into(),
                    from: None,
                    chown: None,
                    chmod: None,
                    link: false,
                }),
                Instruction::Env(vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "two words".into())
                ]),
                Instruction::Env(vec![("OLD".into(), "style value".into())]),
                Instruction::Label(vec![("version".into(), "1".into())]),
                Instruction::Expose(vec!["80".into(), "53/udp".into()]),
                Instruction::Volume(vec!["/data".into(), "/logs".into()]),
                Instruction::Volume(vec!["/srv".into()]),
            ]
        );
        assert_eq!(stage.steps[0].line, 5);
    }

    #[test]
    fn stages_flags_and_heredocs() {
        let file = parse(
            "Dockerfile",
            "FROM busybox AS Build\nRUN --mount=type=cache,target=/cache --network=none <<EOF\n\
             echo in\nEOF\nFROM scratch\nCOPY --from=build --chown=app:app --chmod=640 --link \
             /out /bin/\nCOPY <<-\"END\" /etc/motd\n\thello $X\n\tEND\n\
             HEALTHCHECK --interval=1m30s --retries=3 CMD wget -q localhost\nSHELL [\"/bin/ash\", \"-c\"]\n\
             STOPSIGNAL SIGQUIT\nONBUILD RUN echo later\n",
        )
        .unwrap();
        assert_eq!(file.stages.len(), 2);
        assert_eq!(file.stages[0].name.as_deref(), Some("build"));
        let Instruction::Run(run) = &file.stages[0].steps[0].instruction else {
            panic!()
        };
        assert_eq!(run.command, Command::Shell("echo in\n".into()));
        assert_eq!(run.network.as_deref(), Some("none"));
        assert_eq!(run.mounts[0].kind, MountKind::Cache);
        assert_eq!(run.mounts[0].target, "/cache");
        let later = &file.stages[1].steps;
        let Instruction::Copy(copy) = &later[0].instruction else {
            panic!()
        };
        assert_eq!(copy.from.as_deref(), Some("build"));
        assert_eq!(copy.chown.as_deref(), Some("app:app"));
        assert_eq!(copy.chmod, Some(0o640));
        assert!(copy.link);
        let Instruction::Copy(inline) = &later[1].instruction else {
            panic!()
        };
        assert_eq!(
            inline.sources,
            vec![Source::Inline {
                name: "END".into(),
                content: "hello $X\n".into(),
                expand: false
            }]
        );
        let Instruction::Healthcheck(Some(health)) = &later[2].instruction else {
            panic!()
        };
        assert_eq!(health.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(health.interval, Some(90_000_000_000));
        assert_eq!(health.retries, Some(3));
        assert!(matches!(&later[3].instruction, Instruction::Shell(s) if s[0] == "/bin/ash"));
        assert_eq!(
            later[4].instruction,
            Instruction::StopSignal("SIGQUIT".into())
        );
        assert_eq!(
            later[5].instruction,
            Instruction::OnBuild("RUN echo later".into())
        );
        // A RUN with a command around its here-document keeps both.
        let run = steps("FROM a\nRUN cat <<EOF > /x\nhi\nEOF\n");
        assert_eq!(
            run[0],
            Instruction::Run(Run {
                command: Command::Shell("cat <<EOF > /x\nhi\nEOF\n".into()),
                mounts: vec![],
                network: None
            })
        );
    }

    #[test]
    fn mistakes_name_their_line_and_column() {
        let err = |text: &str| parse("Dockerfile", text).unwrap_err().to_string();
        assert_eq!(
            err("RUN true"),
            "Dockerfile:1:5: RUN before the first FROM: a Dockerfile starts with FROM (only ARG may come before it)"
        );
        assert!(
            err("FROM a\nFROBNICATE x")
                .starts_with("Dockerfile:2:1: unknown instruction FROBNICATE")
        );
        assert!(err("FROM a\nCOPY onlyone").starts_with("Dockerfile:2:6: COPY needs a source"));
        assert!(
            err("FROM a\nCOPY --frm=x a b").starts_with("Dockerfile:2:6: COPY has no option --frm")
        );
        assert!(
            err("FROM a\n  RUN --mount=type=nfs true")
                .starts_with("Dockerfile:2:15: --mount type=nfs")
        );
        assert!(err("FROM a AS 1x").contains("not a stage name"));
        assert!(err("FROM a\nRUN <<EOF\nno end\n").contains("has no line EOF"));
        assert!(err("").contains("no instructions"));
    }

    #[test]
    fn escape_directive_and_durations() {
        let run = steps("# escape=`\nFROM a\nRUN echo a `\n  b\n");
        assert_eq!(
            run[0],
            Instruction::Run(Run {
                command: Command::Shell("echo a   b".into()),
                mounts: vec![],
                network: None
            })
        );
        assert_eq!(duration("500ms"), Some(500_000_000));
        assert_eq!(duration("2h"), Some(7_200_000_000_000));
        assert_eq!(duration("ten"), None);
    }

    #[test]
    fn variables_expand_like_docker() {
        let vars = BTreeMap::from([
            ("NAME".to_string(), "web".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]);
        assert_eq!(substitute("/srv/$NAME/x", &vars), "/srv/web/x");
        assert_eq!(substitute("${NAME}s", &vars), "webs");
        assert_eq!(substitute("${MISSING:-dflt}", &vars), "dflt");
        assert_eq!(substitute("${EMPTY:-dflt}", &vars), "dflt");
        assert_eq!(substitute("${NAME:+set}", &vars), "set");
        assert_eq!(substitute("${MISSING:+set}", &vars), "");
        assert_eq!(substitute("\\$NAME costs $5", &vars), "$NAME costs $5");
    }
}
