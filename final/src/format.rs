//! `--format`, `-q` and `--filter` for the listing commands, as Docker
//! users script them: `--format '{{.ID}} {{.Names}}'`, `--format
//! 'table {{.ID}}\t{{.Status}}'`, `--format json` (one object per line),
//! `{{json .}}`, and `--filter KEY=VALUE`.
//!
//! Docker's templates are Go's text/template; berth understands the part
//! of it that listing commands use: fields (`{{.Names}}`), `{{json .}}`,
//! `{{json .Field}}`, `{{.Label "key"}}` and the `table` prefix. Each row
//! is a JSON object with Docker's field names, so `json` prints what
//! Docker would.

use serde_json::{Map, Value};
use stage01_chroot::Error;

/// How a listing prints its rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// The command's own table.
    Default,
    /// `-q`: the first field only (the ID).
    Quiet,
    /// `--format json`: each row as one line of JSON.
    Json,
    /// `--format TEMPLATE` (`table TEMPLATE` adds a header line).
    Template { template: String, header: bool },
}

impl Format {
    /// From `-q` and `--format`; `--format` wins, as in Docker.
    pub fn new(quiet: bool, format: Option<&str>) -> Format {
        match format {
            Some("json") => Format::Json,
            Some("table") | None if !quiet => Format::Default,
            Some(text) if !text.is_empty() && text != "table" => {
                let (template, header) = match text.strip_prefix("table ") {
                    Some(rest) => (rest, true),
                    None => (text, false),
                };
                Format::Template {
                    template: unescape(template),
                    header,
                }
            }
            _ => Format::Quiet,
        }
    }

    /// The format to use when the command's own table can't filter: a
    /// table of `template`'s fields instead of [`Format::Default`].
    pub fn or_table(self, template: &str) -> Format {
        match self {
            Format::Default => Format::Template {
                template: template.into(),
                header: true,
            },
            other => other,
        }
    }

    /// Print `rows` (`default` prints the command's own table), `key` is
    /// the field `-q` prints.
    pub fn print(
        &self,
        rows: &[Map<String, Value>],
        key: &str,
        default: impl FnOnce(),
    ) -> Result<(), Error> {
        // Each format's lines are written at once, not one call per line.
        let mut out = String::new();
        match self {
            Format::Default => default(),
            Format::Quiet => rows
                .iter()
                .for_each(|row| out += &format!("{}\n", text_of(&row[key]))),
            Format::Json => {
                for row in rows {
                    out += &format!("{}\n", Value::Object(row.clone()));
                }
            }
            Format::Template { template, header } => {
                if *header {
                    out += &format!("{}\n", render_header(template));
                }
                for row in rows {
                    out += &format!("{}\n", render(template, row)?);
                }
            }
        }
        print!("{out}");
        Ok(())
    }
}

/// `\t` and `\n` as the shell passed them, literally, as Docker reads them.
fn unescape(template: &str) -> String {
    template.replace("\\t", "\t").replace("\\n", "\n")
}

/// Fill in `template` from `row`.
pub fn render(template: &str, row: &Map<String, Value>) -> Result<String, Error> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out += &rest[..start];
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::Other(format!("--format {template:?}: a {{{{ is not closed")))?;
        out += &action(after[..end].trim(), row, template)?;
        rest = &after[end + 2..];
    }
    Ok(out + rest)
}

/// One `{{...}}`: `.Field`, `json .`, `json .Field`, `.Label "key"`.
fn action(action: &str, row: &Map<String, Value>, template: &str) -> Result<String, Error> {
    // `.Actor.Attributes.name`: a path into nested objects.
    let field = |name: &str| -> Result<&Value, Error> {
        let mut parts = name.split('.');
        let first = parts.next().unwrap_or_default();
        // A key missing below the first level prints nothing, as a map's
        // missing key does in Docker's templates; a missing field is a typo.
        let mut value = row.get(first);
        for part in parts {
            value = value.map(|v| v.get(part).unwrap_or(&Value::Null));
        }
        value.ok_or_else(|| {
            let known: Vec<&str> = row.keys().map(String::as_str).collect();
            Error::Other(format!(
                "--format {template:?}: no field {name}; there are {}",
                known.join(", ")
            ))
        })
    };
    let words: Vec<&str> = action.split_whitespace().collect();
    match words.as_slice() {
        ["json", "."] => Ok(Value::Object(row.clone()).to_string()),
        ["json", name] if name.starts_with('.') => Ok(field(&name[1..])?.to_string()),
        [".Label", key] => {
            let key = key.trim_matches('"');
            Ok(text_of(&field("Labels")?[key]))
        }
        [name] if name.starts_with('.') => Ok(text_of(field(&name[1..])?)),
        _ => Err(Error::Other(format!(
            "--format {template:?}: berth's templates know {{{{.Field}}}}, {{{{json .}}}}, \
             {{{{json .Field}}}} and {{{{.Label \"key\"}}}}, not {{{{{action}}}}}"
        ))),
    }
}

/// A header line for `table TEMPLATE`: each field's name in capitals, as
/// Docker writes them (`.ID` → `CONTAINER ID` is Docker's own; ours say `ID`).
fn render_header(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out += &rest[..start];
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end]
            .trim()
            .trim_start_matches("json ")
            .trim_start_matches('.');
        out += &name.split_whitespace().next().unwrap_or("").to_uppercase();
        rest = &after[end + 2..];
    }
    out + rest
}

/// A field as Docker prints it: strings bare, maps as `k=v,k=v`, lists
/// joined by commas, nothing for null.
fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", text_of(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// `--filter KEY=VALUE`s: filters with the same key are alternatives,
/// different keys must all hold (Docker's rule).
#[derive(Debug, Default)]
pub struct Filters(Vec<(String, String)>);

impl Filters {
    /// Parse `filters`, each `KEY=VALUE` with KEY one of `known`.
    pub fn new(filters: &[String], known: &[&str]) -> Result<Filters, Error> {
        let mut parsed = Vec::new();
        for filter in filters {
            let (key, value) = filter.split_once('=').ok_or_else(|| {
                Error::Other(format!(
                    "--filter {filter:?}: write KEY=VALUE, e.g. name=web"
                ))
            })?;
            if !known.contains(&key) {
                return Err(Error::Other(format!(
                    "--filter {filter:?}: no filter {key}; there are {}",
                    known.join(", ")
                )));
            }
            parsed.push((key.to_string(), value.to_string()));
        }
        Ok(Filters(parsed))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Is there a filter on `key`?
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Does the row pass, given `test(key, value)` for one filter?
    pub fn pass(&self, test: impl Fn(&str, &str) -> bool) -> bool {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| {
            self.0
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(k, v)| test(k, v))
        })
    }
}

/// `label=KEY` or `label=KEY=VALUE` against a row's labels.
pub fn label_matches(labels: &Value, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((key, value)) => labels[key].as_str() == Some(value),
        None => !labels[filter].is_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row() -> Map<String, Value> {
        json!({"ID": "3f2a", "Names": "web", "Labels": {"team": "a", "tier": "1"}, "Size": 12})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn templates_fill_in_fields() {
        assert_eq!(render("{{.ID}} {{ .Names }}", &row()).unwrap(), "3f2a web");
        assert_eq!(render("{{.Label \"team\"}}", &row()).unwrap(), "a");
        assert_eq!(render("{{.Labels}}", &row()).unwrap(), "team=a,tier=1");
        assert_eq!(render("{{json .Names}}", &row()).unwrap(), "\"web\"");
        assert_eq!(render("{{.Labels.team}}", &row()).unwrap(), "a");
        assert_eq!(render("{{.Labels.nope}}", &row()).unwrap(), "");
        assert!(
            render("{{json .}}", &row())
                .unwrap()
                .starts_with("{\"ID\":\"3f2a\"")
        );
        assert!(
            render("{{.Nope}}", &row())
                .unwrap_err()
                .to_string()
                .contains("no field Nope")
        );
        assert!(render("{{.ID", &row()).is_err());
        assert!(render("{{range .}}", &row()).is_err());
    }

    #[test]
    fn formats_from_the_command_line() {
        assert_eq!(Format::new(false, None), Format::Default);
        assert_eq!(Format::new(true, None), Format::Quiet);
        assert_eq!(Format::new(true, Some("json")), Format::Json);
        assert_eq!(
            Format::new(false, Some("table {{.ID}}\\t{{.Names}}")),
            Format::Template {
                template: "{{.ID}}\t{{.Names}}".into(),
                header: true
            }
        );
        assert_eq!(render_header("{{.ID}}\t{{json .Names}}"), "ID\tNAMES");
    }

    #[test]
    fn filters_or_within_a_key_and_across_keys() {
        let filters = Filters::new(
            &["name=a".into(), "name=b".into(), "status=up".into()],
            &["name", "status"],
        )
        .unwrap();
        let row = |name: &'static str, status: &'static str| {
            move |k: &str, v: &str| if k == "name" { v == name } else { v == status }
        };
        assert!(filters.pass(row("a", "up")));
        assert!(filters.pass(row("b", "up")));
        assert!(!filters.pass(row("c", "up")));
        assert!(!filters.pass(row("a", "down")));
        assert!(Filters::new(&["colour=red".into()], &["name"]).is_err());
        assert!(label_matches(&json!({"team": "a"}), "team"));
        assert!(label_matches(&json!({"team": "a"}), "team=a"));
        assert!(!label_matches(&json!({"team": "a"}), "team=b"));
    }
}
