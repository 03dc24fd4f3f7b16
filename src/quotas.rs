//! Per-project quotas: the `--quotas` file.
//!
//! Owns parsing and checking the file: one line per project,
//! `PROJECT key=value...`, `*` for projects not listed, `#` comments; keys
//! `memory=SIZE` (a cap on the project's items across all shards),
//! `reserve=SIZE` (memory it keeps under pressure), `weight=N` (its weight
//! in the fair share) and `connections=N` (most connections bound to it).
//! It never applies them: the interner (`crate::tenancy::Namespaces`)
//! publishes them to the shards and counts connections; the stores enforce
//! memory (`crate::store`'s fair sharing).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{parse_memory, read_config_file, show_size, MAX_NAME_LEN};
use crate::store::Quota;

/// Largest weight: far beyond any useful ratio, small enough for the
/// arithmetic of shares.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// One project's limits across the whole server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Cap on its items' bytes (None: only the memory limit).
    pub memory: Option<u64>,
    /// Bytes it keeps even under pressure.
    pub reserve: u64,
    pub weight: u32,
    /// Most connections bound to it at once (None: no limit).
    pub connections: Option<u32>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory: None,
            reserve: 0,
            weight: 1,
            connections: None,
        }
    }
}

/// A parsed quotas file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    /// The `*` line's (or no limits).
    default: Limits,
    projects: HashMap<String, Limits>,
    /// Lines that set something (the `*` line too).
    lines: usize,
}

#[derive(Debug)]
pub struct QuotaFileError {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for QuotaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
        }
    }
}

impl std::error::Error for QuotaFileError {}

impl Quotas {
    /// Re-reads `path` for a SIGHUP, as `load`, but a file that sets
    /// nothing (empty, only comments: most likely truncated while being
    /// rewritten) is refused, so the old quotas stay, as the tokens file's
    /// reload does. A file that means to lift every quota says so with a
    /// `*` line.
    pub fn reload(path: &Path, memory_bytes: usize) -> Result<Quotas, QuotaFileError> {
        let quotas = Quotas::load(path, memory_bytes)?;
        if quotas.lines == 0 {
            return Err(QuotaFileError {
                path: path.to_owned(),
                line: 0,
                reason: "sets nothing (empty or truncated?); replace it atomically: write a \
                         new file, rename it over, then SIGHUP. To lift every quota, leave \
                         a `*` line, such as `* weight=1`"
                    .into(),
            });
        }
        Ok(quotas)
    }

    /// Reads and checks `path` against `memory_bytes` (`--memory-mb`).
    pub fn load(path: &Path, memory_bytes: usize) -> Result<Quotas, QuotaFileError> {
        let error = |line, reason| QuotaFileError {
            path: path.to_owned(),
            line,
            reason,
        };
        let text = read_config_file(path).map_err(|reason| error(0, reason))?;
        Quotas::parse(&text, memory_bytes).map_err(|(line, reason)| error(line, reason))
    }

    /// Parses the file's text. Keys a project's line leaves out take the
    /// `*` line's values (wherever in the file it is), except `reserve`,
    /// which `*` may not set.
    pub fn parse(text: &str, memory_bytes: usize) -> Result<Quotas, (usize, String)> {
        let mut lines = Vec::new();
        let mut default = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let project = fields.next().unwrap_or("");
            if project.len() > MAX_NAME_LEN {
                return Err((
                    i + 1,
                    format!("project id longer than {} bytes", MAX_NAME_LEN),
                ));
            }
            let mut keys: Vec<(&str, &str)> = Vec::new();
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    return Err((i + 1, format!("expected key=value, found {field:?}")));
                };
                if keys.iter().any(|(k, _)| *k == key) {
                    return Err((i + 1, format!("{key} given twice")));
                }
                keys.push((key, value));
            }
            if keys.is_empty() {
                return Err((
                    i + 1,
                    "expected `PROJECT key=value...` (memory=, reserve=, weight=, connections=)"
                        .into(),
                ));
            }
            if project == "*" {
                if default.is_some() {
                    return Err((i + 1, "a second `*` line".into()));
                }
                if keys.iter().any(|(k, _)| *k == "reserve") {
                    return Err((
                        i + 1,
                        "reserve= is per project: `*` may not set it (every unlisted project \
                         would reserve it)"
                            .into(),
                    ));
                }
                default = Some((i + 1, keys));
            } else {
                if lines.iter().any(|(_, p, _)| *p == project) {
                    return Err((i + 1, format!("project {project} listed twice")));
                }
                lines.push((i + 1, project, keys));
            }
        }
        let default_limits = match &default {
            Some((line, keys)) => apply(Limits::default(), keys).map_err(|e| (*line, e))?,
            None => Limits::default(),
        };
        let mut quotas = Quotas {
            default: default_limits,
            projects: HashMap::new(),
            lines: lines.len() + usize::from(default.is_some()),
        };
        let mut reserved = 0u64;
        for (line, project, keys) in lines {
            let limits = apply(default_limits, &keys).map_err(|e| (line, e))?;
            reserved = reserved.saturating_add(limits.reserve);
            if reserved > memory_bytes as u64 {
                return Err((
                    line,
                    format!(
                        "reserves add up to {} here, more than --memory-mb {}",
                        show_size(reserved as usize),
                        show_size(memory_bytes)
                    ),
                ));
            }
            quotas.projects.insert(project.to_owned(), limits);
        }
        Ok(quotas)
    }

    /// The limits of `project`: its line's, or the `*` line's.
    pub fn limits(&self, project: &str) -> Limits {
        self.projects.get(project).copied().unwrap_or(self.default)
    }

    /// `project`'s memory limits as each of `shards` shards applies them
    /// (keys spread evenly over shards, so each holds its part).
    pub fn per_shard(&self, project: &str, shards: usize) -> Quota {
        let l = self.limits(project);
        let shards = shards.max(1) as u64;
        Quota {
            cap: l.memory.map_or(u64::MAX, |m| m.div_ceil(shards)),
            reserve: l.reserve / shards,
            weight: l.weight,
        }
    }

    /// Projects listed by name.
    pub fn len(&self) -> usize {
        self.projects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.projects.is_empty()
    }
}

/// `limits` with `keys` set.
fn apply(mut limits: Limits, keys: &[(&str, &str)]) -> Result<Limits, String> {
    for &(key, value) in keys {
        match key {
            "memory" => limits.memory = Some(size(key, value)?),
            "reserve" => limits.reserve = size(key, value)?,
            "weight" => {
                limits.weight = match value.parse::<u32>() {
                    Ok(w) if (1..=MAX_WEIGHT).contains(&w) => w,
                    _ => {
                        return Err(format!(
                            "weight={value}: a whole number from 1 to {MAX_WEIGHT}"
                        ))
                    }
                }
            }
            "connections" => {
                limits.connections = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| format!("connections={value}: a whole number"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown key {other:?} (memory=, reserve=, weight=, connections=)"
                ))
            }
        }
    }
    if let Some(memory) = limits.memory {
        if limits.reserve > memory {
            return Err(format!(
                "reserve={} is more than memory={}",
                show_size(limits.reserve as usize),
                show_size(memory as usize)
            ));
        }
    }
    Ok(limits)
}

fn size(key: &str, value: &str) -> Result<u64, String> {
    parse_memory(value)
        .map(|b| b as u64)
        .map_err(|e| format!("{key}={value}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    /// A reload refuses a file that sets nothing, and takes one that
    /// lifts every quota on purpose.
    #[test]
    fn a_reload_refuses_a_file_that_sets_nothing() {
        let path = std::env::temp_dir().join(format!("ferrocache-quotas-{}", std::process::id()));
        for blank in ["", "\n\n", "# being rewritten\n"] {
            std::fs::write(&path, blank).unwrap();
            assert!(Quotas::load(&path, 64 << 20).is_ok(), "{blank:?} at start");
            let e = Quotas::reload(&path, 64 << 20).unwrap_err();
            assert!(e.reason.starts_with("sets nothing"), "{blank:?}: {e}");
        }
        std::fs::write(&path, "* weight=1\n").unwrap();
        let lifted = Quotas::reload(&path, 64 << 20).unwrap();
        assert_eq!(lifted.limits("any"), Limits::default());
        std::fs::write(&path, "a connections=1\n").unwrap();
        assert_eq!(Quotas::reload(&path, 64 << 20).unwrap().len(), 1);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn lines_defaults_and_comments() {
        let q = Quotas::parse(
            "# quotas\n\
             * weight=2 connections=50   # everyone\n\
             big memory=1g reserve=64m weight=4\n\
             small memory=16m\n",
            1 << 30,
        )
        .unwrap();
        assert_eq!(
            q.limits("big"),
            Limits {
                memory: Some(1 << 30),
                reserve: 64 * MB,
                weight: 4,
                connections: Some(50),
            }
        );
        assert_eq!(q.limits("small").weight, 2, "left-out keys come from *");
        assert_eq!(q.limits("small").memory, Some(16 * MB));
        assert_eq!(
            q.limits("other"),
            Limits {
                memory: None,
                reserve: 0,
                weight: 2,
                connections: Some(50)
            }
        );
        assert_eq!(
            q.per_shard("big", 2),
            Quota {
                cap: 512 * MB,
                reserve: 32 * MB,
                weight: 4
            }
        );
        assert_eq!(q.per_shard("other", 2).cap, u64::MAX);
        // A bare number is megabytes, as --memory-mb.
        let q = Quotas::parse("p memory=3", 1 << 30).unwrap();
        assert_eq!(q.limits("p").memory, Some(3 * MB));
        assert_eq!(Quotas::parse("", 1 << 30).unwrap(), Quotas::default());
    }

    #[test]
    fn bad_files_name_the_line() {
        let err = |text: &str| Quotas::parse(text, 64 << 20).unwrap_err();
        assert_eq!(
            err("a reserve=40m\nb reserve=20m\n\nc reserve=8m\n"),
            (
                4,
                "reserves add up to 68m here, more than --memory-mb 64m".into()
            )
        );
        assert_eq!(err("p\n").0, 1);
        assert_eq!(err("ok weight=1\np colour=red").0, 2);
        assert_eq!(err("p weight=0").0, 1);
        assert_eq!(err("p weight=x").0, 1);
        assert_eq!(err("p memory=lots").0, 1);
        assert_eq!(err("p memory").0, 1);
        assert_eq!(err("p connections=-1").0, 1);
        assert_eq!(err("p weight=1 weight=2").0, 1);
        assert_eq!(err("p weight=1\np weight=2").0, 2);
        assert_eq!(err("* weight=1\n* weight=2").0, 2);
        assert_eq!(err("* reserve=1m").0, 1);
        assert_eq!(err("p memory=1m reserve=2m").0, 1);
        // A bad `*` line is named even when listed after the projects.
        assert_eq!(err("p weight=2\n* weight=0").0, 2);
    }
}
