//! `.dockerignore`: which files of the build context COPY and ADD may see.
//!
//! The rules are Docker's (moby/patternmatcher, BuildKit's dockerignore
//! reader): one pattern a line, `#` lines are comments, each pattern is
//! cleaned like Go's `filepath.Clean` with a leading `/` dropped, `*` and
//! `?` never match `/`, `**` matches any number of directories, `[a-z]`
//! classes and `\` escapes work as in Go's `filepath.Match`, and a line
//! starting with `!` is an exception. The LAST pattern that matches a path,
//! or one of its parent directories, decides. The Dockerfile and the
//! `.dockerignore` are read by the builder whatever the patterns say; they
//! reach the image only if the patterns let them, like any other file.

use std::path::{Path, PathBuf};

use stage01_chroot::Error;

/// The patterns of a context's ignore file (none: nothing is excluded).
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// `!pattern`: matching paths are included again.
    exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    Question,
    /// `[...]`: one character (not `/`) in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` or `**` inside a pattern: any number of whole directories.
    AnyDirs,
    /// `**` at the end: anything at all.
    Anything,
}

// ANCHOR: ignore_file
/// The ignore file for `dockerfile`: `<Dockerfile>.dockerignore` beside it
/// if there is one (BuildKit's rule for named Dockerfiles), else the
/// context's `.dockerignore`.
pub fn ignore_file(context: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    let beside = dockerfile.and_then(|file| {
        let name = file.file_name()?.to_string_lossy().into_owned();
        Some(file.with_file_name(format!("{name}.dockerignore")))
    });
    beside
        .into_iter()
        .chain([context.join(".dockerignore")])
        .find(|path| path.is_file())
}
// ANCHOR_END: ignore_file

impl Ignore {
    /// Read the ignore file that applies to this build, if any.
    pub fn for_build(context: &Path, dockerfile: Option<&Path>) -> Result<Ignore, Error> {
        let Some(path) = ignore_file(context, dockerfile) else {
            return Ok(Ignore::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        Ignore::parse(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Ignore, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            if pattern.is_empty() {
                continue;
            }
            let cleaned = clean(pattern);
            let tokens = tokens(&cleaned).map_err(|e| format!("line {}: {e}", n + 1))?;
            patterns.push(Pattern { exception, tokens });
        }
        Ok(Ignore { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    // ANCHOR: excluded
    /// Whether `path` (relative to the context, `/`-separated) is left out.
    /// The last pattern that matches the path or a parent of it decides.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        if path == "." {
            return false; // the context itself is always sent
        }
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could change the answer is tried.
            if pattern.exception != excluded {
                continue;
            }
            if pattern.matches_or_parent(&path) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
    // ANCHOR_END: excluded

    /// Whether a `!` line exists: then an excluded directory must still be
    /// walked, for what an exception brings back inside it.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

/// One path component against one glob component (Go's `filepath.Match`
/// for COPY's sources).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    tokens(pattern).is_ok_and(|t| matches(&t, &name.chars().collect::<Vec<_>>()))
}

impl Pattern {
    fn matches_or_parent(&self, path: &str) -> bool {
        if matches(&self.tokens, &path.chars().collect::<Vec<_>>()) {
            return true;
        }
        // `secret` also matches `secret/key`: each parent is tried.
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if matches(&self.tokens, &prefix.chars().collect::<Vec<_>>()) {
                return true;
            }
        }
        false
    }
}

/// Go's `filepath.Clean` on a relative path, with a leading `/` dropped:
/// `./a//b/../c/` is `a/c`.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    match parts.is_empty() {
        true => ".".into(),
        false => parts.join("/"),
    }
}

/// Patterns longer than a path can be are refused: matching recurses
/// once a token.
const LONGEST_PATTERN: usize = 4096;

fn tokens(pattern: &str) -> Result<Vec<Token>, String> {
    if pattern.len() > LONGEST_PATTERN {
        return Err(format!(
            "a pattern of {} bytes: patterns are paths, at most {LONGEST_PATTERN}",
            pattern.len()
        ));
    }
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                chars.next_if_eq(&'/');
                out.push(match chars.peek() {
                    None => Token::Anything,
                    Some(_) => Token::AnyDirs,
                });
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Question),
            '\\' => match chars.next() {
                Some(c) => out.push(Token::Char(c)),
                None => return Err(format!("{pattern:?} ends with a lone \\")),
            },
            '[' => {
                let negated = chars.next_if(|c| *c == '^' || *c == '!').is_some();
                let mut ranges = Vec::new();
                loop {
                    let low = match chars.next() {
                        Some(']') if !ranges.is_empty() => break,
                        Some('\\') => chars.next(),
                        other => other,
                    }
                    .ok_or_else(|| format!("{pattern:?}: a [ without its ]"))?;
                    let high = match chars.next_if_eq(&'-') {
                        Some(_) => match chars.next() {
                            Some('\\') => chars.next(),
                            other => other,
                        }
                        .ok_or_else(|| format!("{pattern:?}: a [ without its ]"))?,
                        None => low,
                    };
                    ranges.push((low, high));
                }
                out.push(Token::Class { negated, ranges });
            }
            c => out.push(Token::Char(c)),
        }
    }
    Ok(out)
}

/// Whether the whole `text` matches `tokens`. Each (token, position) pair
/// is decided once and remembered, so a pattern of many `*` takes
/// polynomial time: plain backtracking takes exponential time on
/// `**********x`, and a `.dockerignore` may come with anyone's context.
fn matches(tokens: &[Token], text: &[char]) -> bool {
    let mut known = vec![None; (tokens.len() + 1) * (text.len() + 1)];
    matches_from(tokens, text, 0, 0, &mut known)
}

/// `tokens[t..]` against `text[i..]`; `known` holds what was decided.
fn matches_from(
    tokens: &[Token],
    text: &[char],
    t: usize,
    i: usize,
    known: &mut [Option<bool>],
) -> bool {
    let key = t * (text.len() + 1) + i;
    if let Some(answer) = known[key] {
        return answer;
    }
    let mut rest = |i: usize| matches_from(tokens, text, t + 1, i, known);
    let answer = match &tokens.get(t) {
        None => i == text.len(),
        Some(Token::Char(c)) => text.get(i) == Some(c) && rest(i + 1),
        Some(Token::Question) => text.get(i).is_some_and(|c| *c != '/') && rest(i + 1),
        Some(Token::Class { negated, ranges }) => {
            text.get(i).is_some_and(|c| {
                *c != '/' && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated
            }) && rest(i + 1)
        }
        Some(Token::Star) => {
            let run = text[i..].iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| rest(i + n))
        }
        Some(Token::Anything) => true,
        // `(.*/)?`: nothing, or anything up to and including a `/`.
        Some(Token::AnyDirs) => rest(i) || (i..text.len()).any(|n| text[n] == '/' && rest(n + 1)),
    };
    known[key] = Some(answer);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_like_docker() {
        let i = ignore("# comment\n*.md\n!README.md\n/secret\n./tmp/*\n**/*.log\ndocs/**\n");
        assert!(i.excluded("notes.md"));
        assert!(!i.excluded("README.md"), "the exception wins");
        assert!(!i.excluded("sub/notes.md"), "* does not cross /");
        assert!(i.excluded("secret"));
        assert!(i.excluded("secret/key"), "a parent's match counts");
        assert!(i.excluded("tmp/x"));
        assert!(!i.excluded("tmp"));
        assert!(
            i.excluded("a.log") && i.excluded("a/b/c.log"),
            "** spans dirs"
        );
        assert!(i.excluded("docs/x/y"));
        assert!(!i.excluded("docs"), "docs/** needs something below docs");
        assert!(!i.excluded("src/main.rs"));
    }

    #[test]
    fn the_last_matching_line_wins() {
        let i = ignore("secret\n!secret/keep\n");
        assert!(i.excluded("secret/key"));
        assert!(!i.excluded("secret/keep"));
        let i = ignore("!secret/keep\nsecret\n");
        assert!(i.excluded("secret/keep"), "a later exclusion wins again");
        let i = ignore("*\n!app\n");
        assert!(i.excluded("Dockerfile") && !i.excluded("app/main.c"));
    }

    #[test]
    fn classes_escapes_and_question_marks() {
        let i = ignore("file[0-9].txt\nx?z\n[!a]b\nlit\\*\n");
        assert!(i.excluded("file3.txt") && !i.excluded("filea.txt"));
        assert!(i.excluded("xyz") && !i.excluded("x/z"));
        assert!(i.excluded("cb") && !i.excluded("ab"));
        assert!(i.excluded("lit*") && !i.excluded("literal"));
        assert!(Ignore::parse("[abc").is_err());
    }

    #[test]
    fn many_stars_take_no_time() {
        // Plain backtracking would not finish these in a lifetime (found by
        // the fuzz target); remembered answers take microseconds.
        let i = ignore(&format!(
            "{}x\n**/{}/**/y\n",
            "*".repeat(40),
            "*a".repeat(30)
        ));
        assert!(!i.excluded(&"a".repeat(200)));
        assert!(!i.excluded(&format!("{}/b", "a/".repeat(60))));
        assert!(Ignore::parse(&"a".repeat(5000)).is_err());
    }
}
