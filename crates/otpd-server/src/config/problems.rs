//! Every mistake of a configuration at once, each with where it was written: the file, line
//! and column of a TOML key, or the environment variable as the user spelled it, and the
//! closest known name for a misspelt one ("did you mean `channels`?").
//!
//! The keys otpd knows are the configuration's own serde structs (every one refuses unknown
//! fields): the file and the variables are merged as figment would, extracted, and each
//! error is recorded and its key taken out before the next try, so one run finds them all.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Profile, Provider};

use super::{Config, ConfigError, DefaultsOnly};

/// Most extraction rounds (each finds and removes at least one bad key).
const MAX_ROUNDS: usize = 200;

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `otpd.toml:3:1`, `OTPD_DELIVERY__MAX_ATTEMPTS`, or empty when the value is a
    /// default or the rule spans several keys.
    pub place: String,
    /// What is wrong, and how to put it right.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.place.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.place, self.message)
        }
    }
}

/// `OTPD_*` variables that are not configuration keys: read by the command line, by the
/// SMPP adapter, or by otpd's own test and CI tooling (never by the server's config).
fn is_not_config(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "OTPD_CONFIG",
        "OTPD_URL",
        "OTPD_API_KEY",
        "OTPD_PY",
        "OTPD_BIN",
        "OTPD_NODE_SDK_DIR",
        "OTPD_CRASH_ROUNDS",
        "OTPD_SCREENSHOT_DIR",
    ];
    const PREFIXES: &[&str] = &[
        "OTPD_TEST_",
        "OTPD_REQUIRE_",
        "OTPD_E2E_",
        "OTPD_CI_",
        "OTPD_BENCH_",
    ];
    let upper = name.to_ascii_uppercase();
    NAMES.contains(&upper.as_str())
        || PREFIXES.iter().any(|p| upper.starts_with(p))
        // The SMPP adapter's password of provider NAME.
        || (upper.starts_with("OTPD_PROVIDER_")
            && (upper.ends_with("_PASSWORD") || upper.ends_with("_PASSWORD_FILE")))
}

/// One `OTPD_*` variable that sets a key.
struct EnvVar {
    /// As the user wrote it.
    name: String,
    /// The key path it sets (`["delivery", "max_attempts"]`).
    key: Vec<String>,
    value: Value,
    removed: bool,
}

/// The TOML file, parsed twice: for figment's values and for the positions of its keys.
struct FileSource {
    path: PathBuf,
    text: String,
    doc: toml_edit::ImDocument<String>,
    dict: Dict,
}

/// Whether the files a configuration names (`master_key_file`, `tls.cert_file`, …) are
/// looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileCheck {
    /// On this machine: a missing one is a problem (what `serve` does).
    Here,
    /// Not here: the configuration is meant for another machine or container
    /// (`otpd config check --skip-files`).
    Elsewhere,
}

/// Loads the configuration from the defaults, `file` (which must exist) and the `OTPD_*`
/// variables among `vars` (later ones win), and checks it: every problem is reported.
pub(crate) fn load(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
    files: FileCheck,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut source = match file {
        Some(path) => Some(read_file(path)?),
        None => None,
    };
    let mut env = Vec::new();
    for (name, value) in vars {
        if name.len() < 5 || !name[..5].eq_ignore_ascii_case("OTPD_") || is_not_config(&name) {
            continue;
        }
        match super::env_key(&name) {
            Some(key) => env.push(EnvVar {
                key: key.split('.').map(str::to_owned).collect(),
                value: value.parse().unwrap_or_else(|e| match e {}),
                name,
                removed: false,
            }),
            None => problems.push(Problem {
                place: name,
                message: "not a configuration variable (a nested key is written \
                          OTPD_<SECTION>__<KEY>, e.g. OTPD_DELIVERY__MAX_ATTEMPTS)"
                    .into(),
            }),
        }
    }

    let mut config = None;
    for _ in 0..MAX_ROUNDS {
        let mut figment = Figment::from(Serialized::defaults(DefaultsOnly::default()));
        if let Some(s) = &source {
            figment = figment.merge(Serialized::defaults(&s.dict));
        }
        for var in env.iter().filter(|v| !v.removed) {
            figment = figment.merge(Serialized::default(&var.key.join("."), &var.value));
        }
        let errors = match figment.extract::<Config>() {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => e,
        };
        let mut progress = false;
        for e in errors {
            let (problem, path) = describe(&e, source.as_ref(), &env);
            if !problems.contains(&problem) {
                problems.push(problem);
            }
            progress |= remove(&path, source.as_mut(), &mut env);
        }
        if !progress {
            break;
        }
    }

    let Some(config) = config else {
        return Err(ConfigError::Problems(problems));
    };
    for (path, message) in value_problems(&config, files) {
        problems.push(Problem {
            place: place_of(&path, false, source.as_ref(), &env),
            message: format!("{}: {message}", dotted(&path)),
        });
    }
    if let Err(e) = config.validate() {
        match e {
            ConfigError::Problems(more) => problems.extend(more),
            other => problems.push(Problem {
                place: String::new(),
                message: other.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Problems(problems))
    }
}

/// Reads and parses the TOML file. Anything that exists and reads as text will do, not
/// only a regular file: `/dev/null` stands for "built-in defaults" (the container quick
/// start overrides the image's file with it) and `/dev/stdin` for a piped file.
fn read_file(path: &Path) -> Result<FileSource, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::Load(format!(
            "config file {} not found",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Load(format!("config file {}: {e}", path.display())))?;
    let doc = toml_edit::ImDocument::parse(text.clone()).map_err(|e| {
        let place = match e.span() {
            Some(span) => format!("{}:{}", path.display(), line_col(&text, span.start)),
            None => path.display().to_string(),
        };
        ConfigError::Problems(vec![Problem {
            place,
            message: format!("not valid TOML: {}", e.message().trim_end()),
        }])
    })?;
    let dict = Toml::string(&text)
        .data()
        .map_err(|e| ConfigError::Load(format!("config file {}: {e}", path.display())))?
        .remove(&Profile::Default)
        .unwrap_or_default();
    Ok(FileSource {
        path: path.to_owned(),
        text,
        doc,
        dict,
    })
}

/// The problem an extraction error names, and the key path to take out before the next try.
fn describe(
    e: &figment::Error,
    file: Option<&FileSource>,
    env: &[EnvVar],
) -> (Problem, Vec<String>) {
    use figment::error::Kind;
    let mut path = e.path.clone();
    let message = match &e.kind {
        Kind::UnknownField(name, expected) => {
            // figment names the key in the path already (not every deserializer does).
            if path.last() != Some(name) {
                path.push(name.clone());
            }
            let hint = closest(name, expected);
            match env_of(&path, env) {
                Some(var) => {
                    let place_prefix = var.name[..5].to_owned();
                    let parent: Vec<String> = path[..path.len() - 1]
                        .iter()
                        .map(|s| s.to_ascii_uppercase())
                        .collect();
                    let suggestion = hint.map(|h| {
                        let mut parts = parent.clone();
                        parts.push(h.to_ascii_uppercase());
                        format!("; did you mean {place_prefix}{}?", parts.join("__"))
                    });
                    format!(
                        "no such configuration variable{}",
                        suggestion.unwrap_or_default()
                    )
                }
                None => {
                    let within = if path.len() > 1 {
                        format!(" in `{}`", dotted(&path[..path.len() - 1]))
                    } else {
                        String::new()
                    };
                    let what = match file.and_then(|f| item_at(&f.doc, &path)) {
                        Some(Located::Table | Located::TableAt(_)) => "section",
                        _ => "key",
                    };
                    let suggestion = hint.map(|h| format!("; did you mean `{h}`?"));
                    format!(
                        "unknown {what} `{name}`{within}{}",
                        suggestion.unwrap_or_default()
                    )
                }
            }
        }
        Kind::MissingField(name) => {
            format!("`{}` needs `{name}`", dotted(&path))
        }
        other => {
            if path.is_empty() {
                other.to_string()
            } else {
                format!("{}: {other}", dotted(&path))
            }
        }
    };
    let missing = matches!(e.kind, Kind::MissingField(_));
    let problem = Problem {
        place: place_of(&path, missing, file, env),
        message,
    };
    (problem, path)
}

/// The variable that set `path` (or one of its parents), the last one winning.
fn env_of<'a>(path: &[String], env: &'a [EnvVar]) -> Option<&'a EnvVar> {
    env.iter()
        .rev()
        .find(|v| !v.removed && path.starts_with(&v.key))
}

/// Where `path` was written: the variable that set it, else its position in the file
/// (`table`: the position of the table itself, for a key missing from it).
fn place_of(path: &[String], table: bool, file: Option<&FileSource>, env: &[EnvVar]) -> String {
    if let Some(var) = env
        .iter()
        .rev()
        .find(|v| path.starts_with(&v.key) || (table && v.key.starts_with(path)))
    {
        return var.name.clone();
    }
    let Some(file) = file else {
        return String::new();
    };
    // The nearest written ancestor (a default-valued key has no position).
    for len in (0..=path.len()).rev() {
        if let Some(Located::Span(offset) | Located::TableAt(offset)) =
            item_at(&file.doc, &path[..len])
        {
            return format!("{}:{}", file.path.display(), line_col(&file.text, offset));
        }
    }
    file.path.display().to_string()
}

/// What the file has at a key path.
enum Located {
    /// A key (or array element) starting at this byte offset.
    Span(usize),
    /// A table (a `[section]`) at this offset.
    TableAt(usize),
    /// A table without a position of its own (dotted keys).
    Table,
}

/// A place in the parsed file.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    /// The child at a key or array index, with the position of its key (or element).
    fn child(self, segment: &str) -> Option<(Node<'a>, Option<std::ops::Range<usize>>)> {
        use toml_edit::{Item, Value};
        let index = segment.parse::<usize>().ok();
        match (self, index) {
            (Node::Item(Item::Value(v)), _) => Node::Value(v).child(segment),
            (Node::Item(Item::Table(t)), _) => Node::Table(t).child(segment),
            (Node::Item(Item::ArrayOfTables(a)), Some(i)) => {
                a.get(i).map(|t| (Node::Table(t), t.span()))
            }
            (Node::Table(t), _) => t
                .get_key_value(segment)
                .map(|(k, v)| (Node::Item(v), k.span().or_else(|| v.span()))),
            (Node::Value(Value::Array(a)), Some(i)) => a.get(i).map(|v| (Node::Value(v), v.span())),
            (Node::Value(Value::InlineTable(t)), _) => t
                .get_key_value(segment)
                .map(|(k, v)| (Node::Item(v), k.span().or_else(|| v.span()))),
            _ => None,
        }
    }

    fn is_table(self) -> bool {
        use toml_edit::{Item, Value};
        matches!(
            self,
            Node::Table(_)
                | Node::Item(Item::Table(_) | Item::Value(Value::InlineTable(_)))
                | Node::Value(Value::InlineTable(_))
        )
    }
}

fn item_at(doc: &toml_edit::ImDocument<String>, path: &[String]) -> Option<Located> {
    if path.is_empty() {
        return None;
    }
    let mut node = Node::Item(doc.as_item());
    let mut located = None;
    for segment in path {
        let (next, span) = node.child(segment)?;
        located = Some(match (span, next.is_table()) {
            (Some(s), false) => Located::Span(s.start),
            (Some(s), true) => Located::TableAt(s.start),
            (None, true) => Located::Table,
            (None, false) => match located {
                Some(Located::Span(o) | Located::TableAt(o)) => Located::Span(o),
                _ => Located::Table,
            },
        });
        node = next;
    }
    located
}

/// Takes `path` out of the file's values and the variables; whether anything was removed.
fn remove(path: &[String], file: Option<&mut FileSource>, env: &mut [EnvVar]) -> bool {
    // An array element is never taken out (the next ones would change index).
    if path.is_empty() || path.last().is_some_and(|s| s.parse::<usize>().is_ok()) {
        return false;
    }
    let mut removed = false;
    for var in env.iter_mut().filter(|v| !v.removed) {
        if path.starts_with(&var.key) || var.key.starts_with(path) {
            var.removed = true;
            removed = true;
        }
    }
    if let Some(file) = file {
        removed |= remove_from(&mut file.dict, path);
    }
    removed
}

fn remove_from(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, rest @ ..] => dict.get_mut(first).is_some_and(|v| remove_in(v, rest)),
    }
}

fn remove_in(value: &mut Value, path: &[String]) -> bool {
    match value {
        Value::Dict(_, d) => remove_from(d, path),
        Value::Array(_, a) => match path.split_first() {
            Some((i, rest)) if !rest.is_empty() => i
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .is_some_and(|v| remove_in(v, rest)),
            _ => false,
        },
        _ => false,
    }
}

/// The known name closest to a misspelt one, if one is close.
fn closest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&name, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `providers[0].name` for `["providers", "0", "name"]`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// `line:column` (both from 1, the column in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{line}:{column}")
}

/// Values that are well typed but wrong: files that are not there, region codes that are
/// not ISO 3166 alpha-2. Each with its key path.
fn value_problems(c: &Config, files: FileCheck) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let key = |parts: &[&str]| parts.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let here = files == FileCheck::Here;
    // The files named, by key.
    let mut named: Vec<(Vec<String>, Option<&Path>)> = vec![
        (key(&["master_key_file"]), c.master_key_file.as_deref()),
        (key(&["tls", "cert_file"]), c.tls.cert_file.as_deref()),
        (key(&["tls", "key_file"]), c.tls.key_file.as_deref()),
    ];
    for (i, p) in c.providers.iter().enumerate() {
        let i = i.to_string();
        named.extend([
            (
                key(&["providers", &i, "receipt_token_file"]),
                p.receipt_token_file.as_deref(),
            ),
            (
                key(&["providers", &i, "password_file"]),
                p.password_file.as_deref(),
            ),
            (
                key(&["providers", &i, "dkim_private_key_file"]),
                p.dkim_private_key_file.as_deref(),
            ),
            (
                key(&["providers", &i, "private_key_file"]),
                p.private_key_file.as_deref().map(Path::new),
            ),
            (
                key(&["providers", &i, "tls_ca_file"]),
                p.tls_ca_file.as_deref().map(Path::new),
            ),
        ]);
    }
    for (path, file) in named {
        if let Some(f) = file
            && here
            && !f.is_file()
        {
            out.push((
                path,
                format!(
                    "no file at {} (checking a configuration meant for another machine? \
                     `otpd config check --skip-files`)",
                    f.display()
                ),
            ));
        }
    }
    for (i, p) in c.providers.iter().enumerate() {
        let i = i.to_string();
        if let Some(dir) = &p.voice_clips
            && here
            && !Path::new(dir).is_dir()
        {
            out.push((
                key(&["providers", &i, "voice_clips"]),
                format!("no directory at {dir}"),
            ));
        }
    }
    if let Some(secret) = &c.secret_file
        && here
        && !secret.is_file()
    {
        let dir = secret.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            out.push((
                key(&["secret_file"]),
                format!(
                    "no file at {}, and no directory to write a generated one in",
                    secret.display()
                ),
            ));
        }
    }
    let region = |code: &str| -> Option<String> {
        if otpd_core::recipient::is_region_code(code) {
            return None;
        }
        let upper = code.to_ascii_uppercase();
        Some(if otpd_core::recipient::is_region_code(&upper) {
            format!("`{code}` is written `{upper}` (ISO 3166 alpha-2, capitals)")
        } else {
            format!(
                "`{code}` is not an ISO 3166 alpha-2 region code (two capitals: `US`, `GB`, \
                 `GH`)"
            )
        })
    };
    for (i, r) in c.routes.iter().enumerate() {
        for (j, code) in r.countries.iter().flatten().enumerate() {
            if let Some(m) = region(code) {
                out.push((
                    key(&["routes", &i.to_string(), "countries", &j.to_string()]),
                    m,
                ));
            }
        }
    }
    for (i, p) in c.prices.0.iter().enumerate() {
        if p.country != "*"
            && let Some(m) = region(&p.country)
        {
            out.push((key(&["prices", &i.to_string(), "country"]), m));
        }
    }
    out
}
