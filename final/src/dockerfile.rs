//! Reading a Dockerfile: lines into instructions, and `$VARIABLES` into
//! their values, the way `docker build` does for the subset berth builds.

use std::collections::BTreeMap;

use stage01_chroot::Error;

/// One instruction, its line number, and its text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub instruction: Instruction,
    /// `RUN echo hi`, for messages and the build cache.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(String),
    /// The command: shell form runs under `/bin/sh -c`.
    Run(Vec<String>),
    Copy {
        sources: Vec<String>,
        dest: String,
    },
    /// Like COPY, but a local tar archive is unpacked at `dest`.
    Add {
        sources: Vec<String>,
        dest: String,
    },
    Env(Vec<(String, String)>),
    Arg {
        name: String,
        default: Option<String>,
    },
    Workdir(String),
    User(String),
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    /// Directories that get a volume of their own in every container.
    Volume(Vec<String>),
}

/// The instructions of a Dockerfile, in order; the first must be FROM.
pub fn parse(text: &str) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::new();
    for (line, logical) in logical_lines(text) {
        let (keyword, rest) = logical
            .split_once(char::is_whitespace)
            .map_or((logical.as_str(), ""), |(k, r)| (k, r.trim()));
        let instruction = instruction(&keyword.to_ascii_uppercase(), rest)
            .map_err(|e| Error::Other(format!("Dockerfile line {line}: {e}")))?;
        steps.push(Step {
            line,
            instruction,
            text: logical.clone(),
        });
    }
    match steps.first() {
        Some(Step {
            instruction: Instruction::From(_),
            ..
        })
        | Some(Step {
            instruction: Instruction::Arg { .. },
            ..
        }) => {}
        Some(step) => {
            return Err(Error::Other(format!(
                "Dockerfile line {}: the first instruction must be FROM",
                step.line
            )));
        }
        None => return Err(Error::Other("the Dockerfile has no instructions".into())),
    }
    let froms = steps
        .iter()
        .filter(|s| matches!(s.instruction, Instruction::From(_)))
        .count();
    if froms != 1 {
        return Err(Error::Other(format!(
            "the Dockerfile has {froms} FROM instructions; berth builds one stage, with one FROM"
        )));
    }
    Ok(steps)
}

/// Join `\`-continued lines and drop comments and blank lines; each
/// logical line with the number of its first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (start, mut joined) = current.take().unwrap_or((index + 1, String::new()));
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                current = Some((start, joined));
            }
            None => {
                joined.push_str(trimmed);
                lines.push((start, joined.trim().to_string()));
            }
        }
    }
    if let Some((start, joined)) = current {
        lines.push((start, joined.trim().to_string()));
    }
    lines
}

fn instruction(keyword: &str, rest: &str) -> Result<Instruction, String> {
    let needs = |what: &str| -> Result<(), String> {
        match rest.is_empty() {
            true => Err(format!("{keyword} needs {what}")),
            false => Ok(()),
        }
    };
    Ok(match keyword {
        "FROM" => {
            needs("an image")?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [image] => Instruction::From(image.to_string()),
                [_, as_, _] if as_.eq_ignore_ascii_case("as") => {
                    return Err("FROM ... AS: multi-stage builds are not supported".into());
                }
                _ => return Err(format!("FROM takes one image, not {rest:?}")),
            }
        }
        "RUN" => {
            needs("a command")?;
            Instruction::Run(command(rest))
        }
        "CMD" => Instruction::Cmd(command(rest)),
        "ENTRYPOINT" => Instruction::Entrypoint(command(rest)),
        "COPY" | "ADD" => {
            if rest.starts_with("--") {
                return Err(format!(
                    "{keyword} {rest}: options such as --from or --chown are not supported"
                ));
            }
            let mut words = match json_array(rest) {
                Some(words) => words,
                None => rest.split_whitespace().map(String::from).collect(),
            };
            if words.len() < 2 {
                return Err(format!("{keyword} needs a source and a destination"));
            }
            let dest = words.pop().unwrap_or_default();
            match keyword {
                "COPY" => Instruction::Copy {
                    sources: words,
                    dest,
                },
                _ => Instruction::Add {
                    sources: words,
                    dest,
                },
            }
        }
        "ENV" => {
            needs("NAME=VALUE")?;
            Instruction::Env(pairs(rest)?)
        }
        "LABEL" => {
            needs("KEY=VALUE")?;
            Instruction::Label(pairs(rest)?)
        }
        "ARG" => {
            needs("a name")?;
            match rest.split_once('=') {
                Some((name, default)) => Instruction::Arg {
                    name: name.to_string(),
                    default: Some(unquote(default)),
                },
                None => Instruction::Arg {
                    name: rest.to_string(),
                    default: None,
                },
            }
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
        other => {
            return Err(format!(
                "{other} is not an instruction berth builds (it knows FROM, RUN, COPY, ADD, ENV, \
                 ARG, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL, VOLUME)"
            ));
        }
    })
}

/// Exec form `["prog", "arg"]` as it is; shell form under `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    match json_array(rest) {
        Some(words) => words,
        None if rest.is_empty() => Vec::new(),
        None => vec!["/bin/sh".into(), "-c".into(), rest.into()],
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

fn unquote(text: &str) -> String {
    words(text).into_iter().next().unwrap_or_default()
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

    #[test]
    fn instructions_in_both_forms() {
        let steps = parse(
            "# a comment\nARG BASE=busybox\nFROM $BASE\n\nRUN echo one && \\\n    echo two\n\
             CMD [\"httpd\", \"-f\"]\nENTRYPOINT /bin/sh\nCOPY a b /dest/\n\
             ENV A=1 B=\"two words\"\nENV OLD style value\nlabel version=1\nEXPOSE 80 53/udp\n\
             VOLUME /data /logs\nVOLUME [\"/srv\"]\n",
        )
        .unwrap();
        let instructions: Vec<_> = steps.iter().map(|s| s.instruction.clone()).collect();
        assert_eq!(
            instructions,
            vec![
                Instruction::Arg {
                    name: "BASE".into(),
                    default: Some("busybox".into())
                },
                Instruction::From("$BASE".into()),
                Instruction::Run(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo one &&  echo two".into()
                ]),
                Instruction::Cmd(vec!["httpd".into(), "-f".into()]),
                Instruction::Entrypoint(vec!["/bin/sh".into(), "-c".into(), "/bin/sh".into()]),
                Instruction::Copy {
                    sources: vec!["a".into(), "b".into()],
                    dest: "/dest/".into()
                },
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
        assert_eq!(steps[2].line, 5);
    }

    #[test]
    fn mistakes_name_their_line() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert!(err("RUN true").contains("first instruction must be FROM"));
        assert!(err("FROM a\nFROBNICATE x").contains("line 2: FROBNICATE is not an instruction"));
        assert!(
            err("FROM a\nCOPY onlyone").contains("line 2: COPY needs a source and a destination")
        );
        assert!(err("FROM a\nCOPY --from=x a b").contains("not supported"));
        assert!(err("FROM a AS b").contains("multi-stage"));
        assert!(err("FROM a\nFROM b").contains("2 FROM instructions"));
        assert!(err("").contains("no instructions"));
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
