//! Worker pools, sans IO: a cluster may hold several named pools, each with its own job
//! options (queue, cores, memory, walltime, extra directives) and the resources its workers
//! advertise (`GPU=1`). This file owns the three decisions about them that need no batch
//! system and no scheduler:
//! - reading a pool as `up --pool` spells it ([`PoolSpec::parse`]),
//! - whether the pools offer what a task needs ([`offering_pool`]; a task needing a
//!   resource no pool offers is refused at submission, exit 2),
//! - which pool the queued work should grow ([`demand_by_pool`]): the pool whose resources
//!   the queued tasks need, and no other.
//!
//! Why here: the deployer knows the pools and their resources; the scheduler only knows the
//! demand of its queued tasks per resource set. Both speak [`Resources`], plain data.
//! Not yet wired: the daemon still runs one scaler for one pool (see docs/clusters.md).

use std::collections::BTreeMap;

/// Amounts of named resources: what a worker advertises, or a task needs (`GPU=1,MEM=64e9`).
pub type Resources = BTreeMap<String, f64>;

/// Reads `NAME=AMOUNT,NAME=AMOUNT` (the worker's `--resources` form). Names are letters,
/// digits and `_`; amounts finite and not negative.
pub fn parse_resources(text: &str) -> Result<Resources, String> {
    let mut out = Resources::new();
    for item in text.split(',').map(str::trim) {
        let (name, amount) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}`: expected NAME=AMOUNT, such as GPU=1"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{item}`: a resource name is letters, digits and `_` (GPU, MEM)"
            ));
        }
        let amount: f64 = amount
            .trim()
            .parse()
            .ok()
            .filter(|a: &f64| a.is_finite() && *a >= 0.0)
            .ok_or_else(|| format!("`{item}`: the amount must be a number of at least 0"))?;
        if out.insert(name.to_string(), amount).is_some() {
            return Err(format!("`{name}` is given twice in `{text}`"));
        }
    }
    Ok(out)
}

/// `GPU=1,MEM=64000000000`, as people read it (and [`parse_resources`] reads it back).
pub fn show_resources(r: &Resources) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One pool as `up --pool NAME[:KEY=VALUE,...]` gives it: its name, its job options (config
/// keys and values as written, checked by the configuration when the pool's jobs are
/// rendered) and its workers' resources (`resources=GPU=1,MEM=64e9`).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub name: String,
    pub options: Vec<(String, String)>,
    pub resources: Resources,
}

impl PoolSpec {
    /// Reads `gpu:queue=gpu,job_extra_directive=--gres=gpu:1,resources=GPU=1,MEM=64e9`.
    /// `is_key` says which words are job options (the configuration's keys): an item whose
    /// key is neither one nor `resources` continues the resources before it (`MEM=64e9`).
    pub fn parse(text: &str, is_key: impl Fn(&str) -> bool) -> Result<PoolSpec, String> {
        let (name, rest) = match text.split_once(':') {
            Some((n, r)) => (n, Some(r)),
            None => (text, None),
        };
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || name.starts_with('-')
        {
            return Err(format!(
                "`{text}`: a pool is NAME[:KEY=VALUE,...] with a NAME of letters, digits, `_` \
                 and `-` (at most 32), such as gpu:queue=gpu,resources=GPU=1"
            ));
        }
        let mut options: Vec<(String, String)> = Vec::new();
        let mut resources_text: Option<String> = None;
        for item in rest.into_iter().flat_map(|r| r.split(',')) {
            let key = item.split_once('=').map(|(k, _)| k.trim());
            match key {
                Some("resources") => {
                    if resources_text.is_some() {
                        return Err(format!("pool `{name}`: `resources` is given twice"));
                    }
                    resources_text = Some(item["resources=".len()..].to_string());
                }
                Some(k) if is_key(k) => {
                    let value = item[item.find('=').unwrap_or(0) + 1..].to_string();
                    options.push((k.to_string(), value));
                }
                // `MEM=64e9` after `resources=GPU=1`: one more resource.
                Some(_) if resources_text.is_some() => {
                    let r = resources_text.as_mut().expect("checked");
                    r.push(',');
                    r.push_str(item);
                }
                _ => {
                    return Err(format!(
                        "pool `{name}`: `{item}` is not KEY=VALUE with a job option as KEY \
                         (queue, cores, memory, walltime, job_extra_directive, ...) or \
                         resources=NAME=AMOUNT"
                    ))
                }
            }
        }
        let resources = match resources_text {
            Some(t) => parse_resources(&t).map_err(|e| format!("pool `{name}`: {e}"))?,
            None => Resources::new(),
        };
        Ok(PoolSpec {
            name: name.to_string(),
            options,
            resources,
        })
    }
}

/// Whether a worker with `offered` can run a task needing `needed`.
pub fn covers(offered: &Resources, needed: &Resources) -> bool {
    needed
        .iter()
        .all(|(k, v)| *v <= 0.0 || offered.get(k).is_some_and(|o| o >= v))
}

/// The pool that should run work needing `needed`: among those whose workers cover it, the
/// one offering the least beyond it (a task needing nothing goes to the CPU pool, not the
/// GPU pool), ties to the first. `Err` names what is missing and the pools there are: a
/// submission asking for it is refused (exit 2).
pub fn offering_pool<'a>(
    pools: &'a [(String, Resources)],
    needed: &Resources,
) -> Result<&'a str, String> {
    let surplus = |offered: &Resources| -> usize {
        offered
            .keys()
            .filter(|k| needed.get(*k).is_none_or(|v| *v <= 0.0))
            .count()
    };
    pools
        .iter()
        .filter(|(_, offered)| covers(offered, needed))
        .min_by_key(|(_, offered)| surplus(offered))
        .map(|(name, _)| name.as_str())
        .ok_or_else(|| {
            let have = pools
                .iter()
                .map(|(n, r)| format!("{n} ({})", show_resources(r)))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "no worker pool offers {}: the pools are {have}; add one with \
                 `up --pool NAME:resources={}` or ask for less",
                show_resources(needed),
                show_resources(needed)
            )
        })
}

/// The queued work each pool should grow for: `demand` is the scheduler's queued tasks per
/// resource set (`(needed, tasks)`); each set goes to its [`offering_pool`], so the pool
/// whose resources the tasks need grows and no other. Sets no pool offers are returned
/// apart (their tasks were refused at submission; a worker that advertises more than its
/// pool may still run them).
pub fn demand_by_pool(
    pools: &[(String, Resources)],
    demand: &[(Resources, usize)],
) -> (BTreeMap<String, usize>, Vec<Resources>) {
    let mut by_pool: BTreeMap<String, usize> = pools.iter().map(|(n, _)| (n.clone(), 0)).collect();
    let mut unserved = Vec::new();
    for (needed, tasks) in demand {
        match offering_pool(pools, needed) {
            Ok(name) => *by_pool.entry(name.to_string()).or_default() += tasks,
            Err(_) => unserved.push(needed.clone()),
        }
    }
    (by_pool, unserved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn res(text: &str) -> Resources {
        if text.is_empty() {
            Resources::new()
        } else {
            parse_resources(text).unwrap()
        }
    }

    fn is_key(k: &str) -> bool {
        crate::config::key(k).is_some()
    }

    #[test]
    fn a_pool_reads_as_up_spells_it() {
        let p = PoolSpec::parse(
            "gpu:queue=gpu,job_extra_directive=--gres=gpu:1,resources=GPU=1,MEM=64e9",
            is_key,
        )
        .unwrap();
        assert_eq!(p.name, "gpu");
        assert_eq!(
            p.options,
            [
                ("queue".to_string(), "gpu".to_string()),
                ("job_extra_directive".into(), "--gres=gpu:1".into())
            ]
        );
        assert_eq!(p.resources, res("GPU=1,MEM=64000000000"));
        let cpu = PoolSpec::parse("cpu", is_key).unwrap();
        assert!(cpu.options.is_empty() && cpu.resources.is_empty());
        for bad in [
            "",
            "-x",
            "gpu:queu=gpu",
            "gpu:resources=GPU",
            "gpu:resources=GPU=-1",
            "gpu:resources=GPU=1,GPU=2",
            "a b:queue=x",
            "gpu:resources=GPU=1,resources=MEM=1",
        ] {
            let err = PoolSpec::parse(bad, is_key).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        let err = PoolSpec::parse("gpu:queu=gpu", is_key).unwrap_err();
        assert!(
            err.contains("queu=gpu") && err.contains("job option"),
            "{err}"
        );
    }

    #[test]
    fn a_task_goes_to_the_pool_that_offers_what_it_needs_and_least_else() {
        let pools = vec![
            ("gpu".to_string(), res("GPU=1")),
            ("cpu".to_string(), res("")),
            ("big".to_string(), res("GPU=4,MEM=512e9")),
        ];
        assert_eq!(offering_pool(&pools, &res("")), Ok("cpu"));
        assert_eq!(offering_pool(&pools, &res("GPU=1")), Ok("gpu"));
        assert_eq!(offering_pool(&pools, &res("GPU=2")), Ok("big"));
        assert_eq!(offering_pool(&pools, &res("GPU=0")), Ok("cpu"));
        let err = offering_pool(&pools, &res("FPGA=1")).unwrap_err();
        assert!(
            err.contains("FPGA=1") && err.contains("gpu (GPU=1)") && err.contains("--pool"),
            "{err}"
        );
        let (by_pool, unserved) = demand_by_pool(
            &pools,
            &[
                (res("GPU=1"), 5),
                (res(""), 3),
                (res("FPGA=1"), 2),
                (res("GPU=1"), 1),
            ],
        );
        assert_eq!(by_pool["gpu"], 6);
        assert_eq!(by_pool["cpu"], 3);
        assert_eq!(by_pool["big"], 0);
        assert_eq!(unserved, vec![res("FPGA=1")]);
    }

    proptest! {
        /// Demand is never lost nor invented, and never goes to a pool that cannot run it.
        #[test]
        fn demand_is_conserved_and_served_by_a_covering_pool(
            pools in prop::collection::vec(
                prop::collection::btree_map("[A-C]", 0u8..4, 0..3), 1..4),
            demand in prop::collection::vec(
                (prop::collection::btree_map("[A-D]", 0u8..4, 0..3), 0usize..50), 0..6),
        ) {
            let pools: Vec<(String, Resources)> = pools
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("p{i}"), r.into_iter().map(|(k, v)| (k, f64::from(v))).collect()))
                .collect();
            let demand: Vec<(Resources, usize)> = demand
                .into_iter()
                .map(|(r, n)| (r.into_iter().map(|(k, v)| (k, f64::from(v))).collect(), n))
                .collect();
            let (by_pool, unserved) = demand_by_pool(&pools, &demand);
            let served: usize = by_pool.values().sum();
            let lost: usize = demand.iter().filter(|(r, _)| unserved.contains(r)).map(|(_, n)| n).sum();
            prop_assert_eq!(served + lost, demand.iter().map(|(_, n)| n).sum::<usize>());
            for (needed, _) in &demand {
                match offering_pool(&pools, needed) {
                    Ok(name) => {
                        let offered = &pools.iter().find(|(n, _)| n == name).unwrap().1;
                        prop_assert!(covers(offered, needed));
                    }
                    Err(_) => prop_assert!(pools.iter().all(|(_, o)| !covers(o, needed))),
                }
            }
        }
    }
}
