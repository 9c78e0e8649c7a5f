//! Byte sizes and walltimes: parsed once from what users type, formatted the way each batch
//! system wants them.
//!
//! Users migrating from dask-jobqueue expect "28GB" to mean 28·10⁹ bytes (decimal) and "2GiB"
//! 2·2³⁰ (binary), and expect the request each system receives to be rounded *up* exactly as
//! dask-jobqueue rounds it, so the same options ask for the same resources. The rounding rules
//! live here and nowhere else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, as given by the user ("28GB", "2GiB", "1.5 G", "512MiB", "4000000000").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What the parsers say when they refuse a value; the message names the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// SLURM `--mem`: rounded up in binary units labelled G, M or K (dask-jobqueue's
    /// `slurm_format_bytes_ceil`): "28GB" -> "27G".
    pub fn slurm(self) -> String {
        let n = self.0;
        if n >= GIB {
            format!("{}G", n.div_ceil(GIB))
        } else if n >= MIB {
            format!("{}M", n.div_ceil(MIB))
        } else {
            format!("{}K", n.div_ceil(KIB).max(1))
        }
    }

    /// PBS/Moab `mem=`: rounded up in binary units labelled GB, MB, kB, with a 10x threshold
    /// (dask-jobqueue's `pbs_format_bytes_ceil`): 28GB -> "27GB", 6GB -> "5723MB".
    pub fn pbs(self) -> String {
        let n = self.0;
        if n >= 10 * GIB {
            format!("{}GB", n.div_ceil(GIB))
        } else if n >= 10 * MIB {
            format!("{}MB", n.div_ceil(MIB))
        } else if n >= 10 * KIB {
            format!("{}kB", n.div_ceil(KIB))
        } else {
            format!("{n}B")
        }
    }

    /// LSF `-M`: a bare number in the site's `LSF_UNIT_FOR_LIMITS` unit, rounded up in decimal
    /// units (dask-jobqueue's `lsf_format_bytes_ceil`): 8GB in KB -> "8000000".
    pub fn lsf(self, unit: LsfUnit) -> String {
        self.0.div_ceil(unit.bytes()).to_string()
    }

    /// HTCondor `RequestMemory`: whole MiB, rounded down as dask-jobqueue's
    /// `floor(MY.DaskWorkerMemory / 1048576)` does.
    pub fn htcondor_mib(self) -> u64 {
        self.0 / MIB
    }

    /// HTCondor `RequestDisk`: whole KiB, rounded down.
    pub fn htcondor_kib(self) -> u64 {
        self.0 / KIB
    }

    /// OAR's per-core memory property: ceil(bytes / cores / MiB).
    pub fn oar_mib_per_core(self, cores: u32) -> u64 {
        self.0.div_ceil(u64::from(cores.max(1)) * MIB)
    }

    /// The worker's `--memory-limit` argument: exact bytes in whole TiB, GiB or MiB when they
    /// divide evenly, else plain bytes, so the value is lossless and still readable
    /// ("6GiB", "7000000000").
    pub fn exact(self) -> String {
        let n = self.0;
        for (unit, label) in [(1u64 << 40, "TiB"), (GIB, "GiB"), (MIB, "MiB")] {
            if n >= unit && n.is_multiple_of(unit) {
                return format!("{}{label}", n / unit);
            }
        }
        n.to_string()
    }

    /// Human-readable, for status tables and logs ("1.5 GiB").
    pub fn human(self) -> String {
        let n = self.0 as f64;
        for (unit, label) in [
            (1u64 << 40, "TiB"),
            (GIB, "GiB"),
            (MIB, "MiB"),
            (KIB, "KiB"),
        ] {
            if self.0 >= unit {
                return format!("{:.1} {label}", n / unit as f64);
            }
        }
        format!("{} B", self.0)
    }
}

/// Accepted suffixes, case-insensitive, as Dask's `parse_bytes` accepts them.
const BYTE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("p", 1_000_000_000_000_000),
    ("pb", 1_000_000_000_000_000),
    ("ki", KIB),
    ("kib", KIB),
    ("mi", MIB),
    ("mib", MIB),
    ("gi", GIB),
    ("gib", GIB),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
    ("pi", 1 << 50),
    ("pib", 1 << 50),
];

const BYTE_HELP: &str = "use a number with a unit: B, kB, MB, GB, TB (decimal, powers of 1000) \
     or KiB, MiB, GiB, TiB (binary, powers of 1024), e.g. 28GB or 2GiB";

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let split = compact
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(compact.len());
        let (number, unit) = compact.split_at(split);
        if number.is_empty() {
            return Err(UnitError(format!(
                "invalid size '{text}': no number; {BYTE_HELP}"
            )));
        }
        let value: f64 = number.parse().map_err(|_| {
            UnitError(format!(
                "invalid size '{text}': bad number '{number}'; {BYTE_HELP}"
            ))
        })?;
        let multiplier = BYTE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                UnitError(format!(
                    "invalid size '{text}': unknown unit '{unit}'; {BYTE_HELP}"
                ))
            })?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(UnitError(format!("invalid size '{text}': too large")));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.exact())
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.exact())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A size as the user wrote it ("100G", "120GB"), with its bytes. Explicit per-job requests
/// (`job_mem`) reach the batch system as written where its directive reads that spelling,
/// as dask-jobqueue passes them: reformatting "100G" from its decimal bytes gave SLURM
/// `--mem=94G`. The bytes are for checks and for systems that want a bare number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeAsWritten {
    /// The text, trimmed.
    pub text: String,
    pub bytes: ByteSize,
}

impl FromStr for SizeAsWritten {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        Ok(SizeAsWritten {
            text: text.trim().to_string(),
            bytes: text.parse()?,
        })
    }
}

impl fmt::Display for SizeAsWritten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SizeAsWritten {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SizeAsWritten {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The unit LSF reads `-M` in (`LSF_UNIT_FOR_LIMITS` in lsf.conf; KB when unset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LsfUnit {
    B,
    KB,
    MB,
    GB,
    TB,
    PB,
    EB,
}

impl LsfUnit {
    fn bytes(self) -> u64 {
        match self {
            LsfUnit::B => 1,
            LsfUnit::KB => 1_000,
            LsfUnit::MB => 1_000_000,
            LsfUnit::GB => 1_000_000_000,
            LsfUnit::TB => 1_000_000_000_000,
            LsfUnit::PB => 1_000_000_000_000_000,
            LsfUnit::EB => 1_000_000_000_000_000_000,
        }
    }
}

impl Serialize for LsfUnit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{self:?}"))
    }
}

impl<'de> Deserialize<'de> for LsfUnit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl FromStr for LsfUnit {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "B" => LsfUnit::B,
            "K" | "KB" => LsfUnit::KB,
            "M" | "MB" => LsfUnit::MB,
            "G" | "GB" => LsfUnit::GB,
            "T" | "TB" => LsfUnit::TB,
            "P" | "PB" => LsfUnit::PB,
            "E" | "EB" => LsfUnit::EB,
            _ => {
                return Err(UnitError(format!(
                    "invalid LSF unit '{s}': use one of B, KB, MB, GB, TB, PB, EB \
                     (the value of LSF_UNIT_FOR_LIMITS in lsf.conf)"
                )))
            }
        })
    }
}

/// A job's wall-clock limit, in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Walltime(pub u64);

const WALLTIME_HELP: &str = "use HH:MM:SS, MM:SS, D-HH:MM:SS or a duration like 90m, 1h30m, 2d";

/// The shortest walltime accepted: a job shorter than this cannot start a worker.
pub const MIN_WALLTIME_SECONDS: u64 = 10;
/// The longest walltime accepted (365 days): anything longer is a typo or an overflow, and
/// the arithmetic on it (lifetimes, deadlines) must stay far from u64's edge.
pub const MAX_WALLTIME_SECONDS: u64 = 365 * 86_400;

/// Refuses walltimes outside [`MIN_WALLTIME_SECONDS`, `MAX_WALLTIME_SECONDS`].
fn walltime_in_range(seconds: u64) -> Result<Walltime, String> {
    if seconds == 0 {
        Err("must be longer than zero".into())
    } else if seconds < MIN_WALLTIME_SECONDS {
        Err(format!(
            "{seconds} s is too short: at least {MIN_WALLTIME_SECONDS} s"
        ))
    } else if seconds > MAX_WALLTIME_SECONDS {
        Err(format!(
            "too long: at most 365 days ({MAX_WALLTIME_SECONDS} s)"
        ))
    } else {
        Ok(Walltime(seconds))
    }
}

impl Walltime {
    pub fn seconds(self) -> u64 {
        self.0
    }

    fn hms(self) -> (u64, u64, u64) {
        (self.0 / 3600, self.0 / 60 % 60, self.0 % 60)
    }

    /// HH:MM:SS with hours past 24 as they are (PBS, SGE h_rt, OAR accept that).
    pub fn hhmmss(self) -> String {
        let (h, m, s) = self.hms();
        format!("{h:02}:{m:02}:{s:02}")
    }

    /// SLURM `-t`: HH:MM:SS below a day, D-HH:MM:SS from a day on.
    pub fn slurm(self) -> String {
        if self.0 < 86_400 {
            return self.hhmmss();
        }
        let days = self.0 / 86_400;
        let rest = Walltime(self.0 % 86_400);
        format!("{days}-{}", rest.hhmmss())
    }

    /// Reads "H:M" as hours and minutes, as LSF's `-W` does (and dask-jobqueue's LSF default
    /// "00:30"); None when the text is not of that two-field form.
    pub fn parse_lsf_hhmm(text: &str) -> Option<Result<Walltime, UnitError>> {
        let (h, m) = text.trim().split_once(':')?;
        if h.is_empty() || m.is_empty() || !(h.chars().chain(m.chars()).all(|c| c.is_ascii_digit()))
        {
            return None;
        }
        let bad =
            |why: String| UnitError(format!("invalid walltime '{text}' for LSF (HH:MM): {why}"));
        let (Ok(h), Ok(m)) = (h.parse::<u64>(), m.parse::<u64>()) else {
            return Some(Err(bad("number too large".into())));
        };
        Some(if m > 59 {
            Err(bad(format!("minutes must be 0-59, got {m}")))
        } else {
            h.checked_mul(3600)
                .and_then(|s| s.checked_add(m * 60))
                .ok_or_else(|| "number too large".to_string())
                .and_then(walltime_in_range)
                .map_err(bad)
        })
    }

    /// LSF `-W`: HH:MM (minutes rounded up, so a limit is never shortened).
    pub fn lsf(self) -> String {
        let minutes = self.0.div_ceil(60);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl FromStr for Walltime {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        let t = text.trim();
        let bad =
            |why: &str| UnitError(format!("invalid walltime '{text}': {why}; {WALLTIME_HELP}"));
        if t.is_empty() {
            return Err(bad("empty"));
        }
        let seconds = if t.contains(':') || t.contains('-') {
            parse_clock(t).map_err(|why| bad(&why))?
        } else if t.chars().all(|c| c.is_ascii_digit()) {
            // A bare number is minutes, as SLURM, LSF and PBS's `-l walltime` read it.
            t.parse::<u64>()
                .ok()
                .and_then(|m| m.checked_mul(60))
                .ok_or_else(|| bad("number too large"))?
        } else {
            parse_duration(t).map_err(|why| bad(&why))?
        };
        walltime_in_range(seconds).map_err(|why| bad(&why))
    }
}

/// "D-HH:MM:SS", "D-HH:MM", "D-HH", "HH:MM:SS", "MM:SS".
fn parse_clock(t: &str) -> Result<u64, String> {
    let (days, clock) = match t.split_once('-') {
        Some((d, rest)) => (
            d.parse::<u64>()
                .map_err(|_| format!("bad day count '{d}'"))?,
            Some(rest),
        ),
        None => (0, None),
    };
    let clock = clock.unwrap_or(t);
    let fields: Vec<&str> = clock.split(':').collect();
    let nums = fields
        .iter()
        .map(|f| {
            if f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()) {
                Err(format!("bad field '{f}'"))
            } else {
                f.parse::<u64>().map_err(|_| format!("bad field '{f}'"))
            }
        })
        .collect::<Result<Vec<u64>, String>>()?;
    let with_days = t.contains('-');
    let (h, m, s) = match (with_days, nums.as_slice()) {
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        (_, [h, m, s]) => (*h, *m, *s),
        (false, [m, s]) => (0, *m, *s),
        _ => return Err("too many or too few fields".into()),
    };
    if m > 59 {
        return Err(format!("minutes must be 0-59, got {m}"));
    }
    if s > 59 {
        return Err(format!("seconds must be 0-59, got {s}"));
    }
    if with_days && h > 23 {
        return Err(format!("hours must be 0-23 after a day count, got {h}"));
    }
    // Checked: "307445734561825861" days or hours must be refused, not wrapped around.
    days.checked_mul(86_400)
        .and_then(|d| d.checked_add(h.checked_mul(3600)?))
        .and_then(|t| t.checked_add(m * 60 + s))
        .ok_or_else(|| "number too large".to_string())
}

/// [`parse_seconds`] as a command-line value parser (clap wants the error as text).
pub fn seconds_arg(s: &str) -> std::result::Result<u64, String> {
    parse_seconds(s).map_err(|e| e.0)
}

/// A duration in seconds for options like `--death-timeout`: a bare number is seconds
/// ("60"), otherwise a duration ("90s", "2m", "1h30m").
pub fn parse_seconds(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return t
            .parse()
            .map_err(|_| UnitError(format!("invalid duration '{text}': number too large")));
    }
    parse_duration(t).map_err(|why| {
        UnitError(format!(
            "invalid duration '{text}': {why}; use seconds (60) or a duration like 90s, 2m, 1h30m"
        ))
    })
}

/// "90m", "1h30m", "2d", "45s", "1h 30m".
fn parse_duration(t: &str) -> Result<u64, String> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut seen_unit = false;
    for c in t.chars().filter(|c| !c.is_whitespace()) {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            other => return Err(format!("unknown unit '{other}'")),
        };
        if number.is_empty() {
            return Err(format!("unit '{c}' without a number before it"));
        }
        // Checked: a huge count must be refused, not wrapped around to a short duration.
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| "number too large".to_string())?;
        number.clear();
        seen_unit = true;
    }
    if !number.is_empty() || !seen_unit {
        return Err("a number without a unit".into());
    }
    Ok(total)
}

impl fmt::Display for Walltime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hhmmss())
    }
}

impl Serialize for Walltime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hhmmss())
    }
}

impl<'de> Deserialize<'de> for Walltime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> ByteSize {
        s.parse().unwrap()
    }

    #[test]
    fn parses_decimal_and_binary_sizes_like_dask() {
        assert_eq!(b("28GB").0, 28_000_000_000);
        assert_eq!(b("2GiB").0, 2 << 30);
        assert_eq!(b("1.5 G").0, 1_500_000_000);
        assert_eq!(b("512mib").0, 512 << 20);
        assert_eq!(b("4000").0, 4000);
        assert_eq!(b("6Gi").0, 6 << 30);
    }

    #[test]
    fn refuses_unknown_units_with_the_accepted_ones() {
        let err = "12XB".parse::<ByteSize>().unwrap_err().0;
        assert!(
            err.contains("'12XB'") && err.contains("unknown unit 'XB'"),
            "{err}"
        );
        assert!(err.contains("GiB"), "{err}");
        assert!("GB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn slurm_rounds_up_in_binary_units() {
        assert_eq!(b("28GB").slurm(), "27G");
        assert_eq!(b("7GB").slurm(), "7G");
        assert_eq!(b("1GiB").slurm(), "1G");
        assert_eq!(b("100MB").slurm(), "96M");
        assert_eq!(b("500kB").slurm(), "489K");
        assert_eq!(b("1").slurm(), "1K");
    }

    #[test]
    fn pbs_rounds_up_with_a_tenfold_threshold() {
        assert_eq!(b("28GB").pbs(), "27GB");
        assert_eq!(b("6GB").pbs(), "5723MB");
        assert_eq!(b("10GiB").pbs(), "10GB");
        assert_eq!(b("5MB").pbs(), "4883kB");
        assert_eq!(b("100").pbs(), "100B");
    }

    #[test]
    fn lsf_uses_the_site_unit_in_decimal() {
        assert_eq!(b("8GB").lsf(LsfUnit::KB), "8000000");
        assert_eq!(b("8GB").lsf(LsfUnit::MB), "8000");
        assert_eq!(b("2GiB").lsf(LsfUnit::GB), "3");
    }

    #[test]
    fn exact_form_round_trips() {
        for s in ["6GiB", "7000000000", "512MiB", "3072"] {
            assert_eq!(b(s).exact(), s);
            assert_eq!(b(&b(s).exact()), b(s));
        }
    }

    #[test]
    fn walltimes_parse_in_every_accepted_form() {
        let w = |s: &str| s.parse::<Walltime>().unwrap().0;
        assert_eq!(w("00:30:00"), 1800);
        assert_eq!(w("30:00"), 1800);
        assert_eq!(w("1-02:03:04"), 86_400 + 7384);
        assert_eq!(w("2-12"), 2 * 86_400 + 12 * 3600);
        assert_eq!(w("90m"), 5400);
        assert_eq!(w("1h30m"), 5400);
        assert_eq!(w("48:00:00"), 48 * 3600);
        assert_eq!(w("45"), 2700);
    }

    #[test]
    fn walltimes_refuse_out_of_range_fields() {
        let err = "25:61:00".parse::<Walltime>().unwrap_err().0;
        assert!(
            err.contains("'25:61:00'") && err.contains("minutes must be 0-59"),
            "{err}"
        );
        assert!("1-25:00:00".parse::<Walltime>().is_err());
        assert!("1h30".parse::<Walltime>().is_err());
        assert!("abc".parse::<Walltime>().is_err());
        assert!("00:00:00".parse::<Walltime>().is_err());
        assert!("1:2:3:4".parse::<Walltime>().is_err());
    }

    /// `RDASK_WALLTIME=307445734561825861` was 307445734561825861 minutes, which wrapped
    /// around u64 to a 44-second walltime.
    #[test]
    fn huge_walltimes_are_refused_not_wrapped_around() {
        for t in [
            "307445734561825861",
            "307445734561825861:00:00",
            "213503982334601-00:00:00",
            "307445734561825861m",
            "99999999999999999999d",
            "18446744073709551615s",
            "366d",
            "8785:00:00",
        ] {
            let err = t.parse::<Walltime>().unwrap_err().0;
            assert!(
                err.contains("too large") || err.contains("too long"),
                "{t}: {err}"
            );
        }
        let err = "00:00:05".parse::<Walltime>().unwrap_err().0;
        assert!(err.contains("at least 10 s"), "{err}");
        assert_eq!("365d".parse::<Walltime>().unwrap().0, MAX_WALLTIME_SECONDS);
        assert_eq!("00:00:10".parse::<Walltime>().unwrap().0, 10);
        assert!(Walltime::parse_lsf_hhmm("5124095576030431:00")
            .unwrap()
            .is_err());
        assert!(Walltime::parse_lsf_hhmm("99999999999999999999:00")
            .unwrap()
            .is_err());
        assert!(parse_seconds("307445734561825861m").is_err());
        assert!(parse_seconds("99999999999999999999").is_err());
    }

    #[test]
    fn seconds_accept_bare_numbers_and_durations() {
        assert_eq!(parse_seconds("60").unwrap(), 60);
        assert_eq!(parse_seconds("2m").unwrap(), 120);
        assert_eq!(parse_seconds("1h30m").unwrap(), 5400);
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn lsf_reads_two_fields_as_hours_and_minutes() {
        assert_eq!(Walltime::parse_lsf_hhmm("00:30").unwrap().unwrap().0, 1800);
        assert_eq!(
            Walltime::parse_lsf_hhmm("12:05").unwrap().unwrap().0,
            12 * 3600 + 300
        );
        assert!(Walltime::parse_lsf_hhmm("1:75").unwrap().is_err());
        assert!(Walltime::parse_lsf_hhmm("00:30:00").is_none());
        assert!(Walltime::parse_lsf_hhmm("90m").is_none());
    }

    #[test]
    fn walltimes_format_per_system() {
        let w = |s: &str| s.parse::<Walltime>().unwrap();
        assert_eq!(w("00:02:00").slurm(), "00:02:00");
        assert_eq!(w("36:00:00").slurm(), "1-12:00:00");
        assert_eq!(w("36:00:00").hhmmss(), "36:00:00");
        assert_eq!(w("00:30:00").lsf(), "00:30");
        assert_eq!(w("00:30:01").lsf(), "00:31");
        assert_eq!(w("1-00:00:00").lsf(), "24:00");
    }
}
