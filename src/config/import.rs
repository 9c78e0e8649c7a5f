//! `config import`: dask-jobqueue's `jobqueue.yaml` read into our TOML configuration.
//!
//! dask-jobqueue keeps one section per system under `jobqueue:` (`jobqueue.slurm.cores`),
//! in kebab-case or snake_case (Dask's config treats both alike), with older names still
//! honoured (`job-extra`, `env-extra`, `extra`, `header-skip`: used only when the new name
//! is empty, as dask-jobqueue does). Each section becomes a `[system]` table of our file;
//! each key is mapped to ours, or named in a [`Note`] with the reason it was not. Every
//! value passes the same checks as a value typed into the file (`super::check`), so what is
//! written loads; [`check_loads`] then loads the whole result once per system.
//!
//! Pure: YAML text in, TOML text and notes out. Writing the file is the command line's.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::{check, key, Env, Kind, Layer, SystemKind, KEYS};
use crate::error::{Error, Result};
use crate::units::{self, Walltime};

/// One key of the YAML that did not become a key of ours, or became one with a different
/// meaning worth knowing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The key's path in the YAML: `jobqueue.slurm.python`.
    pub key: String,
    /// What happened to it and why.
    pub why: String,
}

/// The outcome of an import.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    /// The configuration file to write.
    pub toml: String,
    /// The systems that got a table, in the YAML's order.
    pub systems: Vec<SystemKind>,
    /// Keys not imported (or imported with a difference), in the YAML's order.
    pub notes: Vec<Note>,
}

/// A value bound for our file: the key, the value, and the YAML key it came from.
struct Mapped {
    key: &'static str,
    value: Value,
    from: String,
}

/// dask-jobqueue's keys that are replaced by a newer name, and that name. The old one is
/// used only when the new one is empty (dask-jobqueue's `core.py`).
const RENAMED: &[(&str, &str)] = &[
    ("job-extra", "job-extra-directives"),
    ("env-extra", "job-script-prologue"),
    ("extra", "worker-extra-args"),
    ("header-skip", "job-directives-skip"),
];

/// dask-jobqueue's job name when its configuration gives none (its jobqueue.yaml).
const DASK_JOB_NAME: &str = "dask-worker";

/// dask-jobqueue's names that differ from ours.
const NAMES: &[(&str, &str)] = &[
    ("name", "job_name"),
    ("project", "account"),
    ("job-extra-directives", "job_extra_directive"),
    ("job-script-prologue", "prologue"),
    ("job-script-epilogue", "epilogue"),
    ("ncpus", "job_cpu"),
    ("mem", "job_mem"),
];

/// Keys with no counterpart here, and why. An empty value of these (null, `[]`, `{}`) or the
/// value dask-jobqueue ships is skipped without a word: it asks for nothing.
fn unmapped_reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "worker-command" => {
            "a Python module for `python -m`; workers here are `rdask-jobqueue worker` \
             (`worker_command` replaces that whole command)"
        }
        "scheduler-options" => {
            "the scheduler is the cluster daemon: give `up --port`, `--scheduler-interface` \
             or `--contact-address` instead"
        }
        "shared-temp-directory" => {
            "there are no TLS files to share: the cluster's secret lives in \
             $RDASK_HOME/clusters/NAME/secret, which the nodes read through the shared home"
        }
        "nanny" => {
            "a supervisor always restarts crashed worker processes (`--no-nanny` in \
             `worker_extra_arg` turns it off)"
        }
        "protocol" => "workers speak TCP with an HMAC handshake; there is no other protocol",
        "security" => "connections are authenticated with the cluster's secret; TLS is not offered",
        "use-stdin" => "LSF jobs are always submitted on stdin (`bsub < script`)",
        _ => return None,
    })
}

/// The value dask-jobqueue's own jobqueue.yaml ships for a key, where that value asks for
/// nothing a note should mention.
fn is_shipped_default(name: &str, value: &Yaml) -> bool {
    match (name, value) {
        ("worker-command", Yaml::String(s)) => s == "distributed.cli.dask_worker",
        ("use-stdin", Yaml::Boolean(b)) | ("nanny", Yaml::Boolean(b)) => *b,
        _ => false,
    }
}

/// Null, an empty string, list or mapping: dask-jobqueue's "not set".
fn is_empty(value: &Yaml) -> bool {
    match value {
        Yaml::Null | Yaml::BadValue => true,
        Yaml::String(s) => s.trim().is_empty(),
        Yaml::Array(a) => a.is_empty(),
        Yaml::Hash(h) => h.is_empty(),
        _ => false,
    }
}

/// How a YAML value reads back to a user in a note.
fn show(value: &Yaml) -> String {
    match value {
        Yaml::String(s) | Yaml::Real(s) => format!("{s:?}"),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null | Yaml::BadValue => "null".into(),
        Yaml::Alias(_) => "an alias".into(),
        Yaml::Array(items) => format!(
            "[{}]",
            items.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Yaml::Hash(h) => format!(
            "{{{}}}",
            h.iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A scalar as TOML: strings stay strings, numbers stay numbers.
fn scalar(value: &Yaml) -> Option<Value> {
    Some(match value {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::Integer(*i),
        Yaml::Real(s) => Value::Float(s.parse().ok()?),
        Yaml::Boolean(b) => Value::Boolean(*b),
        _ => return None,
    })
}

/// A scalar as text, for list items and arguments (`- 8` is the word "8").
fn text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list option: a list of scalars, one string (one item), or a mapping. dask-jobqueue
/// iterates a mapping's keys (`job-extra: {-C geyser}` is the directive `-C geyser`), except
/// HTCondor's extra directives, a mapping of submit attributes: `Key = Value` lines.
fn lines(value: &Yaml, htcondor_attributes: bool) -> std::result::Result<Vec<String>, String> {
    match value {
        Yaml::Array(items) => items
            .iter()
            .map(|i| text(i).ok_or_else(|| format!("{} is not a string", show(i))))
            .collect(),
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| {
                let k = text(k).ok_or_else(|| format!("{} is not a string", show(k)))?;
                match (htcondor_attributes, v) {
                    (true, v) if !matches!(v, Yaml::Null) => {
                        let v = text(v).ok_or_else(|| format!("{} is not a value", show(v)))?;
                        Ok(format!("{k} = {v}"))
                    }
                    _ => Ok(k),
                }
            })
            .collect(),
        other => text(other)
            .map(|t| vec![t])
            .ok_or_else(|| format!("{} is not a list of strings", show(other))),
    }
}

/// The keys of one section, by dask-jobqueue's canonical (kebab-case) name, in order.
struct Section<'a> {
    path: String,
    entries: Vec<(String, &'a Yaml)>,
}

impl<'a> Section<'a> {
    fn get(&self, name: &str) -> Option<&'a Yaml> {
        self.entries
            .iter()
            .find(|(n, v)| n == name && !is_empty(v))
            .map(|(_, v)| *v)
    }
}

/// Reads dask-jobqueue's YAML (`origin` names it in messages) and maps it. Invalid YAML, or
/// YAML without a `jobqueue:` mapping of systems, is an error; keys that cannot be mapped
/// are notes.
pub fn import(yaml: &str, origin: &str) -> Result<Imported> {
    let docs = YamlLoader::load_from_str(yaml)
        .map_err(|e| Error::invalid(format!("{origin} is not valid YAML: {e}")))?;
    let top = match docs.as_slice() {
        [doc] => doc,
        [] => return Err(no_jobqueue(origin)),
        _ => {
            return Err(Error::invalid(format!(
                "{origin} holds {} YAML documents; Dask reads one: keep the one with `jobqueue:`",
                docs.len()
            )))
        }
    };
    let Yaml::Hash(top) = top else {
        return Err(no_jobqueue(origin));
    };
    let mut out = Imported::default();
    let mut tables: Vec<(SystemKind, Vec<Mapped>)> = Vec::new();
    let mut found_jobqueue = false;
    for (name, value) in top {
        let name = text(name).unwrap_or_else(|| show(name));
        if name != "jobqueue" {
            out.notes.push(Note {
                key: name.clone(),
                why: if name == "distributed" {
                    "Dask's own settings: workers here keep fixed memory thresholds (spill at \
                     60%, pause at 80%, restart at 95% of their limit) and have no other knobs"
                        .into()
                } else {
                    "not part of dask-jobqueue's configuration".into()
                },
            });
            continue;
        }
        found_jobqueue = true;
        let Yaml::Hash(systems) = value else {
            if !is_empty(value) {
                return Err(Error::invalid(format!(
                    "{origin}: `jobqueue` must be a mapping of systems (slurm:, pbs:, ...), got {}",
                    show(value)
                )));
            }
            continue;
        };
        for (system_name, section) in systems {
            let system_name = text(system_name).unwrap_or_else(|| show(system_name));
            let path = format!("jobqueue.{system_name}");
            let Ok(system) = system_name.parse::<SystemKind>() else {
                out.notes.push(Note {
                    key: path,
                    why: format!(
                        "not a batch system we write jobs for (we know {})",
                        SystemKind::names()
                    ),
                });
                continue;
            };
            let entries = match section {
                Yaml::Hash(h) => h
                    .iter()
                    .map(|(k, v)| (text(k).unwrap_or_else(|| show(k)).replace('_', "-"), v))
                    .collect(),
                v if is_empty(v) => Vec::new(),
                other => {
                    return Err(Error::invalid(format!(
                        "{origin}: `{path}` must be a mapping of options, got {}",
                        show(other)
                    )))
                }
            };
            let section = Section { path, entries };
            let mapped = map_section(system, &section, &mut out.notes);
            if let Some(t) = tables.iter_mut().find(|(s, _)| *s == system) {
                t.1.extend(mapped);
            } else {
                tables.push((system, mapped));
            }
        }
    }
    if !found_jobqueue {
        return Err(no_jobqueue(origin));
    }
    if tables.is_empty() {
        return Err(Error::invalid(format!(
            "{origin}: `jobqueue` has no section for a batch system we know ({})",
            SystemKind::names()
        )));
    }
    out.systems = tables.iter().map(|(s, _)| *s).collect();
    out.toml = render(origin, &tables);
    Ok(out)
}

fn no_jobqueue(origin: &str) -> Error {
    Error::invalid(format!(
        "{origin} has no `jobqueue:` mapping: give dask-jobqueue's configuration file \
         (~/.config/dask/jobqueue.yaml), whose sections are jobqueue.slurm, jobqueue.pbs, ..."
    ))
}

/// Maps one system's section; what cannot be mapped goes to `notes`.
fn map_section(system: SystemKind, s: &Section, notes: &mut Vec<Note>) -> Vec<Mapped> {
    let mut out: Vec<Mapped> = Vec::new();
    let note = |notes: &mut Vec<Note>, name: &str, why: String| {
        notes.push(Note {
            key: format!("{}.{name}", s.path),
            why,
        })
    };
    // The value of a key under our name, checked as the file's loader checks it; a refused
    // value is a note and stays out of the file.
    let put = |out: &mut Vec<Mapped>, notes: &mut Vec<Note>, name: &str, ours: &str, v: Value| {
        let spec = key(ours).expect("a key of ours");
        match check(spec, v.clone()) {
            Ok(_) => {
                out.retain(|m| m.key != spec.name);
                out.push(Mapped {
                    key: spec.name,
                    value: v,
                    from: format!("{}.{name}", s.path),
                });
            }
            Err(why) => notes.push(Note {
                key: format!("{}.{name}", s.path),
                why: format!("not imported: {why} ({})", spec.help),
            }),
        }
    };
    // Each canonical name once: the first spelling wins, a second is a note.
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &s.entries {
        if seen.contains(&name.as_str()) {
            note(
                notes,
                name,
                "given twice (in kebab-case and snake_case); the first is used".into(),
            );
            continue;
        }
        seen.push(name);
        if is_empty(value) {
            continue;
        }
        let name = name.as_str();
        // An old name yields to its new one when that is set.
        if let Some((_, new)) = RENAMED.iter().find(|(old, _)| *old == name) {
            if s.get(new).is_some() {
                note(
                    notes,
                    name,
                    format!("ignored: `{new}` is set, and replaces it (as in dask-jobqueue)"),
                );
                continue;
            }
        }
        let canonical = RENAMED
            .iter()
            .find(|(old, _)| *old == name)
            .map_or(name, |(_, new)| *new);
        if let Some(why) = unmapped_reason(canonical) {
            if !is_shipped_default(canonical, value) {
                note(notes, name, format!("{} = {}: {why}", name, show(value)));
            }
            continue;
        }
        match canonical {
            "worker-extra-args" => {
                match lines(value, false) {
                    Ok(args) => worker_args(system, s, name, &args, &mut out, notes, &put),
                    Err(why) => note(notes, name, format!("not imported: {why}")),
                }
                continue;
            }
            "job-extra-directives"
            | "job-script-prologue"
            | "job-script-epilogue"
            | "job-directives-skip"
            | "submit-command-extra"
            | "cancel-command-extra" => {
                let htcondor =
                    canonical == "job-extra-directives" && system == SystemKind::Htcondor;
                match lines(value, htcondor) {
                    Ok(items) => {
                        let ours = NAMES
                            .iter()
                            .find(|(theirs, _)| *theirs == canonical)
                            .map_or(canonical.replace('-', "_"), |(_, o)| o.to_string());
                        let v = Value::Array(items.into_iter().map(Value::String).collect());
                        put(&mut out, notes, name, &ours, v);
                    }
                    Err(why) => note(notes, name, format!("not imported: {why}")),
                }
                continue;
            }
            "shebang" if system == SystemKind::Htcondor => {
                // dask-jobqueue's HTCondor default: the submit description is not a script.
                if text(value).as_deref() != Some("#!/usr/bin/env condor_submit") {
                    note(
                        notes,
                        name,
                        "HTCondor jobs are submit descriptions here; a shebang is not used".into(),
                    );
                }
                continue;
            }
            _ => {}
        }
        let ours = NAMES
            .iter()
            .find(|(theirs, _)| *theirs == canonical)
            .map_or(canonical.replace('-', "_"), |(_, o)| o.to_string());
        // `project` and `account` are one key here: an `account` beside it wins.
        if canonical == "project" && s.get("account").is_some() {
            note(
                notes,
                name,
                "ignored: `account` is set too, and is the one used".into(),
            );
            continue;
        }
        let Some(spec) = key(&ours).filter(|k| !matches!(k.name, "system" | "worker_command"))
        else {
            note(
                notes,
                name,
                format!(
                    "{name} = {}: not a dask-jobqueue option we know; nothing here matches it",
                    show(value)
                ),
            );
            continue;
        };
        let v = match (spec.kind, scalar(value)) {
            (Kind::Lines, _) => match lines(value, false) {
                Ok(items) => Value::Array(items.into_iter().map(Value::String).collect()),
                Err(why) => {
                    note(notes, name, format!("not imported: {why}"));
                    continue;
                }
            },
            (_, Some(v)) => v,
            (_, None) => {
                note(
                    notes,
                    name,
                    format!("not imported: expected a single value, got {}", show(value)),
                );
                continue;
            }
        };
        put(&mut out, notes, name, spec.name, v);
    }
    // dask-jobqueue's shipped defaults fill what a section leaves out; the only one that
    // differs from ours is the job name, which users see in their queue.
    if s.get("name").is_none() {
        out.push(Mapped {
            key: "job_name",
            value: Value::String(DASK_JOB_NAME.into()),
            from: "dask-jobqueue's default name".into(),
        });
    }
    // dask-jobqueue splits the cores into several processes when `processes` is unset.
    if s.get("processes").is_none() {
        note(
            notes,
            "processes",
            "unset: dask-jobqueue would split the cores into about sqrt(cores) Python \
             processes; here one multi-threaded worker process per job uses all cores (set \
             `processes` to keep the old layout)"
                .into(),
        );
    }
    if s.get("cores").is_none() || s.get("memory").is_none() {
        note(
            notes,
            "cores",
            "cores or memory unset: dask-jobqueue asks for them when a cluster is made; \
             here the defaults apply (cores = 1, memory = \"4GiB\") unless `up` is given \
             --cores/--memory"
                .into(),
        );
    }
    out
}

/// Puts a value under our key (the YAML key's name, ours, the value), or a note if the
/// value is refused: `map_section`'s `put`.
type Put<'a> = dyn Fn(&mut Vec<Mapped>, &mut Vec<Note>, &str, &str, Value) + 'a;

/// Splits dask-worker's extra arguments: `--lifetime` and `--lifetime-stagger` become our
/// lifetime options, the ones our worker has (`--name`, `--no-nanny`, `--resources`) stay,
/// the others are notes.
#[allow(clippy::too_many_arguments)]
fn worker_args(
    system: SystemKind,
    s: &Section,
    name: &str,
    args: &[String],
    out: &mut Vec<Mapped>,
    notes: &mut Vec<Note>,
    put: &Put,
) {
    let path = format!("{}.{name}", s.path);
    let mut kept: Vec<String> = Vec::new();
    let mut lifetime: Option<u64> = None;
    let mut stagger: Option<u64> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let takes_value = !matches!(
            flag,
            "--no-nanny" | "--nanny" | "--lifetime-restart" | "--no-dashboard" | "--reconnect"
        );
        // The flag's value: inline (`--lifetime=1h`) or the next word when it is not a flag.
        let value = if !takes_value {
            None
        } else if inline.is_some() {
            inline.clone()
        } else if args.get(i + 1).is_some_and(|n| !n.starts_with("--")) {
            i += 1;
            Some(args[i].clone())
        } else {
            None
        };
        i += 1;
        let whole = match &value {
            Some(v) => format!("{flag} {v}"),
            None => flag.to_string(),
        };
        let why = |why: String| Note {
            key: path.clone(),
            why: format!("`{whole}`: {why}"),
        };
        let seconds = |v: &Option<String>| -> std::result::Result<u64, String> {
            let v = v.as_deref().ok_or("no value given")?;
            units::parse_seconds(v).map_err(|e| e.0)
        };
        match flag {
            "--lifetime" => match seconds(&value) {
                Ok(t) => lifetime = Some(t),
                Err(e) => notes.push(why(format!("not imported: {e}"))),
            },
            "--lifetime-stagger" => match seconds(&value) {
                Ok(t) => stagger = Some(t),
                Err(e) => notes.push(why(format!("not imported: {e}"))),
            },
            "--lifetime-restart" => notes.push(why(
                "a job whose workers retired ends, and the scaler submits a new one while the \
                 cluster's target wants it"
                    .into(),
            )),
            "--nthreads" | "--nworkers" | "--nprocs" | "--memory-limit" => {
                notes.push(why("set from cores, processes and memory".into()))
            }
            "--nanny" => {}
            "--no-nanny" | "--name" => {
                kept.push(flag.to_string());
                kept.extend(value);
            }
            // Checked as our worker checks it, so an import never writes a job script whose
            // workers refuse to start.
            "--resources" => match value.as_deref().map(crate::task_array::parse_resources) {
                Some(Ok(_)) => kept.extend([flag.to_string()].into_iter().chain(value)),
                Some(Err(e)) => notes.push(why(format!("not imported: {e}"))),
                None => notes.push(why(
                    "not imported: no value given (use --resources NAME=AMOUNT,...)".into(),
                )),
            },
            "--death-timeout" | "--local-directory" | "--interface" => {
                let ours = flag.trim_start_matches("--").replace('-', "_");
                match value {
                    Some(v) => put(out, notes, name, &ours, Value::String(v)),
                    None => notes.push(why("not imported: no value given".into())),
                }
            }
            _ => notes.push(why(
                "not a flag of rdask's worker (`rdask-jobqueue worker --help` lists them)".into(),
            )),
        }
    }
    if !kept.is_empty() {
        let v = Value::Array(kept.into_iter().map(Value::String).collect());
        put(out, notes, name, "worker_extra_arg", v);
    }
    if let Some(lifetime) = lifetime {
        // dask-jobqueue's default walltime where the section has none.
        let walltime_text = s
            .get("walltime")
            .and_then(text)
            .unwrap_or_else(|| match system {
                SystemKind::Lsf => "00:30".into(),
                _ => "00:30:00".into(),
            });
        let walltime = match Walltime::parse_lsf_hhmm(&walltime_text) {
            Some(hhmm) if system == SystemKind::Lsf => hhmm,
            _ => walltime_text.parse::<Walltime>(),
        };
        match walltime {
            Ok(w) if lifetime < w.seconds() => {
                let margin = w.seconds() - lifetime;
                if margin > w.seconds() / 4 {
                    notes.push(Note {
                        key: path.clone(),
                        why: format!(
                            "`--lifetime {lifetime}`: lifetime_margin = {margin} s, more than a \
                             quarter of the walltime; workers retire at walltime minus a \
                             quarter ({} s) instead",
                            w.seconds() / 4
                        ),
                    });
                }
                put(
                    out,
                    notes,
                    name,
                    "lifetime_margin",
                    Value::Integer(margin as i64),
                );
            }
            Ok(w) => {
                notes.push(Note {
                    key: path.clone(),
                    why: format!(
                        "`--lifetime {lifetime}` is not shorter than the walltime ({} s): \
                         workers run until the batch system ends them (lifetime_margin = 0)",
                        w.seconds()
                    ),
                });
                put(out, notes, name, "lifetime_margin", Value::Integer(0));
            }
            Err(e) => notes.push(Note {
                key: path.clone(),
                why: format!(
                    "`--lifetime {lifetime}`: not imported, the walltime cannot be read: {}",
                    e.0
                ),
            }),
        }
    }
    if let Some(stagger) = stagger {
        put(
            out,
            notes,
            name,
            "lifetime_stagger",
            Value::Integer(stagger as i64),
        );
    }
}

/// The TOML file: a header saying where it came from, `system` when there is one section,
/// then one table per system with each key commented with its YAML origin.
fn render(origin: &str, tables: &[(SystemKind, Vec<Mapped>)]) -> String {
    let mut out = format!(
        "# rdask-jobqueue configuration, imported from {origin} (dask-jobqueue's jobqueue.yaml)\n\
         # by `rdask-jobqueue config import`. Keys: docs/configuration.md.\n"
    );
    if let [(only, _)] = tables {
        out.push_str(&format!("system = \"{only}\"\n"));
    } else {
        out.push_str(
            "# Several systems: the one on PATH (or --system / RDASK_SYSTEM) picks its table.\n",
        );
    }
    for (system, mapped) in tables {
        out.push_str(&format!("\n[{system}]\n"));
        // In the order of our keys, so every imported file reads alike.
        let mut by_key: BTreeMap<usize, &Mapped> = BTreeMap::new();
        for m in mapped {
            let order = KEYS
                .iter()
                .position(|k| k.name == m.key)
                .unwrap_or(usize::MAX);
            by_key.insert(order, m);
        }
        for m in by_key.values() {
            let line = format!("{} = {}", m.key, m.value);
            out.push_str(&format!("{line:<44} # {}\n", m.from));
        }
    }
    out
}

/// Loads `toml` (the import's result) for each of `systems` exactly as `up --system S
/// --config FILE` would, so a file that would be refused is never written: e.g. more
/// processes than cores.
pub fn check_loads(toml: &str, systems: &[SystemKind]) -> Result<()> {
    let dir = tempfile::tempdir().map_err(Error::io("creating a scratch directory"))?;
    let path = dir.path().join("imported.toml");
    std::fs::write(&path, toml).map_err(Error::io(format!("writing {}", path.display())))?;
    for system in systems {
        let mut flags = Layer::default();
        flags.flag("system", Value::String(system.name().into()));
        super::load(Some(Path::new(&path)), &flags, &Env::default()).map_err(|e| {
            Error::invalid(format!(
                "the imported [{system}] table would be refused: {}; fix the YAML and import again",
                e.to_string()
                    .replace(&path.display().to_string(), "the imported file")
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imported(yaml: &str) -> Imported {
        let i = import(yaml, "test.yaml").unwrap();
        check_loads(&i.toml, &i.systems).unwrap();
        i
    }

    fn table(i: &Imported, system: &str) -> toml::Table {
        let doc: toml::Table = i.toml.parse().unwrap();
        doc[system].as_table().unwrap().clone()
    }

    fn notes_about<'a>(i: &'a Imported, needle: &str) -> Vec<&'a Note> {
        i.notes.iter().filter(|n| n.key.contains(needle)).collect()
    }

    #[test]
    fn both_spellings_and_old_names_map_to_our_keys() {
        let i = imported(
            "jobqueue:\n  slurm:\n    name: dask-worker\n    cores: 8\n    memory: '16 GB'\n    \
             processes: 2\n    queue: debug\n    project: p1\n    walltime: '01:00:00'\n    \
             job_extra: ['--exclusive']\n    env-extra: ['module load x']\n    \
             header_skip: ['--mem']\n    job-cpu: 16\n    job_mem: 100G\n    \
             death_timeout: 30\n    local-directory: $TMPDIR\n    log_directory: /logs\n    \
             interface: ib0\n",
        );
        let t = table(&i, "slurm");
        assert_eq!(t["job_name"].as_str(), Some("dask-worker"));
        assert_eq!(t["cores"].as_integer(), Some(8));
        assert_eq!(t["memory"].as_str(), Some("16 GB"));
        assert_eq!(t["account"].as_str(), Some("p1"));
        assert_eq!(
            t["job_extra_directive"].as_array().unwrap()[0].as_str(),
            Some("--exclusive")
        );
        assert_eq!(
            t["prologue"].as_array().unwrap()[0].as_str(),
            Some("module load x")
        );
        assert_eq!(
            t["job_directives_skip"].as_array().unwrap()[0].as_str(),
            Some("--mem")
        );
        assert_eq!(t["job_cpu"].as_integer(), Some(16));
        assert_eq!(t["job_mem"].as_str(), Some("100G"));
        assert_eq!(t["death_timeout"].as_integer(), Some(30));
        assert_eq!(t["local_directory"].as_str(), Some("$TMPDIR"));
        assert_eq!(t["log_directory"].as_str(), Some("/logs"));
        assert_eq!(t["interface"].as_str(), Some("ib0"));
        assert!(i.toml.contains("system = \"slurm\""), "{}", i.toml);
        assert!(i.notes.is_empty(), "{:?}", i.notes);
    }

    #[test]
    fn an_old_name_yields_to_its_new_one() {
        let i = imported(
            "jobqueue:\n  pbs:\n    cores: 2\n    memory: 4GB\n    processes: 1\n    \
             job-extra: ['-m n']\n    job-extra-directives: ['-W group_list=x']\n",
        );
        let t = table(&i, "pbs");
        let extra = t["job_extra_directive"].as_array().unwrap();
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].as_str(), Some("-W group_list=x"));
        let n = notes_about(&i, "job-extra");
        assert_eq!(n.len(), 1, "{:?}", i.notes);
        assert!(n[0].why.contains("replaces it"), "{n:?}");
    }

    #[test]
    fn lifetime_becomes_a_margin_before_the_walltime() {
        let i = imported(
            "jobqueue:\n  slurm:\n    cores: 1\n    memory: 1GB\n    processes: 1\n    \
             walltime: '01:00:00'\n    worker-extra-args: ['--lifetime', '55m', \
             '--lifetime-stagger=4m', '--lifetime-restart', '--name', 'w', '--resources', \
             'GPU=1,MEM=2e9', '--resources=GPU', '--resources']\n",
        );
        let t = table(&i, "slurm");
        assert_eq!(t["lifetime_margin"].as_integer(), Some(300));
        assert_eq!(t["lifetime_stagger"].as_integer(), Some(240));
        let kept: Vec<&str> = t["worker_extra_arg"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // Our worker takes --resources: a valid one stays, a malformed one is a note.
        assert_eq!(kept, ["--name", "w", "--resources", "GPU=1,MEM=2e9"]);
        let why: Vec<&str> = i.notes.iter().map(|n| n.why.as_str()).collect();
        assert!(
            why.iter().any(|w| w.starts_with("`--lifetime-restart`")),
            "{why:?}"
        );
        assert!(
            why.iter()
                .any(|w| w.starts_with("`--resources GPU`") && w.contains("NAME=AMOUNT")),
            "{why:?}"
        );
        assert!(
            why.iter()
                .any(|w| w.starts_with("`--resources`") && w.contains("no value given")),
            "{why:?}"
        );
        assert!(!why.iter().any(|w| w.contains("GPU=1,MEM")), "{why:?}");
    }

    #[test]
    fn lsf_lifetime_reads_the_walltime_as_hours_and_minutes() {
        // No walltime: dask-jobqueue's LSF default '00:30' is half an hour.
        let i = imported(
            "jobqueue:\n  lsf:\n    cores: 1\n    memory: 1GB\n    processes: 1\n    \
             ncpus: 2\n    mem: 2000000000\n    extra: ['--lifetime', '25m']\n",
        );
        let t = table(&i, "lsf");
        assert_eq!(t["lifetime_margin"].as_integer(), Some(300));
        assert_eq!(t["job_cpu"].as_integer(), Some(2));
        assert_eq!(t["job_mem"].as_integer(), Some(2_000_000_000));
    }

    #[test]
    fn python_only_keys_are_named_with_the_reason() {
        let i = imported(
            "distributed:\n  worker:\n    memory:\n      target: false\njobqueue:\n  sge:\n    \
             cores: 1\n    memory: 1GB\n    processes: 1\n    python: /usr/bin/python3\n    \
             scheduler-options: {port: 8786}\n    shared-temp-directory: /shared\n    \
             worker-command: distributed.cli.dask_worker\n    nanny: true\n    frobnicate: 3\n  \
             kubernetes:\n    cores: 1\n",
        );
        let keys: Vec<&str> = i.notes.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "distributed",
                "jobqueue.sge.scheduler-options",
                "jobqueue.sge.shared-temp-directory",
                "jobqueue.sge.frobnicate",
                "jobqueue.kubernetes",
            ]
        );
        assert!(i.notes[1].why.contains("up --port"), "{:?}", i.notes[1]);
        // `python` is ours too: the workers' interpreter for Python tasks.
        assert_eq!(
            table(&i, "sge")["python"].as_str(),
            Some("/usr/bin/python3")
        );
    }

    #[test]
    fn python_maps_to_ours_and_a_relative_path_is_a_note() {
        let i = imported(
            "jobqueue:\n  slurm:\n    cores: 1\n    memory: 1GB\n    processes: 1\n    \
             python: python3.12\n  pbs:\n    cores: 1\n    memory: 1GB\n    processes: 1\n    \
             python: venv/bin/python\n  sge:\n    cores: 1\n    memory: 1GB\n    processes: 1\n    \
             python: null\n",
        );
        assert_eq!(table(&i, "slurm")["python"].as_str(), Some("python3.12"));
        // dask-jobqueue's shipped null (the submitter's interpreter) asks for nothing.
        assert!(!table(&i, "sge").contains_key("python"));
        assert!(!table(&i, "pbs").contains_key("python"));
        let n = notes_about(&i, "jobqueue.pbs.python");
        assert!(
            n.len() == 1 && n[0].why.contains("relative path"),
            "{:?}",
            i.notes
        );
        check_loads(&i.toml, &i.systems).unwrap();
    }

    #[test]
    fn htcondor_extra_directives_are_submit_attributes() {
        let i = imported(
            "jobqueue:\n  htcondor:\n    cores: 1\n    memory: 1GB\n    processes: 1\n    \
             disk: 1GB\n    job-extra-directives: {+AccountingGroup: '\"grp\"', request_gpus: 1}\n    \
             shebang: '#!/usr/bin/env condor_submit'\n    submit-command-extra: ['-spool']\n",
        );
        let t = table(&i, "htcondor");
        let extra: Vec<&str> = t["job_extra_directive"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(extra, ["+AccountingGroup = \"grp\"", "request_gpus = 1"]);
        assert_eq!(t["disk"].as_str(), Some("1GB"));
        assert!(!t.contains_key("shebang"));
        assert!(i.notes.is_empty(), "{:?}", i.notes);
    }

    #[test]
    fn a_flow_mapping_of_directives_gives_its_keys() {
        // Cheyenne's example in dask-jobqueue's docs: `job-extra: {-C geyser}`.
        let i = imported(
            "jobqueue:\n  slurm:\n    cores: 1\n    memory: 25GB\n    processes: 1\n    \
             job-extra: {-C geyser}\n",
        );
        let t = table(&i, "slurm");
        assert_eq!(
            t["job_extra_directive"].as_array().unwrap()[0].as_str(),
            Some("-C geyser")
        );
    }

    #[test]
    fn refused_values_are_notes_and_stay_out() {
        let i = imported(
            "jobqueue:\n  slurm:\n    cores: 100000\n    memory: 2GB\n    processes: 1\n    \
             queue: \"a\\nb\"\n",
        );
        let t = table(&i, "slurm");
        assert!(
            !t.contains_key("cores") && !t.contains_key("queue"),
            "{t:?}"
        );
        let why: Vec<&str> = i.notes.iter().map(|n| n.why.as_str()).collect();
        assert!(why.iter().any(|w| w.contains("1 to 4096")), "{why:?}");
        assert!(why.iter().any(|w| w.contains("a newline")), "{why:?}");
    }

    /// Any mix of dask-jobqueue's keys and odd values: the import never panics, every value
    /// it writes passed our checks, and the file it writes loads unless the whole is
    /// inconsistent, which is then an input error (exit 2), never a crash.
    mod any_yaml {
        use super::*;
        use proptest::prelude::*;

        const KEYS: &[&str] = &[
            "name",
            "cores",
            "memory",
            "processes",
            "queue",
            "account",
            "project",
            "walltime",
            "job-cpu",
            "job_mem",
            "ncpus",
            "mem",
            "resource-spec",
            "job-extra",
            "job-extra-directives",
            "env-extra",
            "job-script-prologue",
            "header-skip",
            "job-directives-skip",
            "worker-extra-args",
            "extra",
            "interface",
            "local-directory",
            "log-directory",
            "death-timeout",
            "python",
            "shebang",
            "nanny",
            "scheduler-options",
            "lsf-units",
            "disk",
            "use-stdin",
            "unknown-key",
        ];
        const VALUES: &[&str] = &[
            "null",
            "0",
            "1",
            "4",
            "-3",
            "100000",
            "true",
            "1.5",
            "'8GB'",
            "'28 GB'",
            "'100G'",
            "'00:30'",
            "'01:00:00'",
            "'25:61:00'",
            "'MB'",
            "''",
            "[]",
            "{}",
            "['--lifetime', '55m']",
            "['--lifetime-stagger', 'x', '--resources']",
            "['-x', 2]",
            "{-C geyser: null}",
            "{a: [1]}",
            "'#!/bin/sh'",
            "'a\\nb'",
            "'/scratch/$USER'",
            "'dask-worker'",
            "[[1]]",
        ];

        fn section() -> impl Strategy<Value = Vec<(usize, usize)>> {
            proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..12)
        }

        proptest! {
            #[test]
            fn the_import_never_panics_and_what_it_writes_loads(
                system in 0..SystemKind::ALL.len(),
                entries in section(),
            ) {
                let system = SystemKind::ALL[system];
                let mut yaml = format!("jobqueue:\n  {system}:\n");
                let mut seen = std::collections::BTreeSet::new();
                for (k, v) in entries {
                    if seen.insert(k) {
                        yaml.push_str(&format!("    {}: {}\n", KEYS[k], VALUES[v]));
                    }
                }
                match import(&yaml, "any.yaml") {
                    Ok(i) => {
                        prop_assert_eq!(&i.systems, &vec![system]);
                        // Only keys that disagree with each other (more processes than
                        // cores, too little memory per process) may stop it: each value
                        // alone was checked.
                        if let Err(e) = check_loads(&i.toml, &i.systems) {
                            prop_assert_eq!(e.exit_code(), 2, "{}", e);
                            prop_assert!(e.to_string().contains(" with --"), "{}", e);
                        }
                    }
                    Err(e) => prop_assert_eq!(e.exit_code(), 2, "{}", e),
                }
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_naming_the_file() {
        for (yaml, needle) in [
            ("jobqueue: [", "not valid YAML"),
            ("slurm:\n  cores: 1\n", "no `jobqueue:`"),
            ("", "no `jobqueue:`"),
            ("jobqueue: 3\n", "must be a mapping of systems"),
            ("jobqueue:\n  slurm: [1]\n", "must be a mapping of options"),
            ("jobqueue:\n  k8s: {}\n", "no section for a batch system"),
            ("a: 1\n---\nb: 2\n", "2 YAML documents"),
        ] {
            let err = import(yaml, "in.yaml").unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string().contains("in.yaml") && err.to_string().contains(needle),
                "{yaml:?}: {err}"
            );
        }
        // Every value passes, the whole does not: refused before anything is written.
        let i = import(
            "jobqueue:\n  slurm:\n    cores: 2\n    processes: 4\n    memory: 8GB\n",
            "in.yaml",
        )
        .unwrap();
        let err = check_loads(&i.toml, &i.systems).unwrap_err();
        assert!(err.to_string().contains("[slurm]") && err.to_string().contains("--processes 4"));
    }
}
