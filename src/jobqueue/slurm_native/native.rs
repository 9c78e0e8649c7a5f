//! The native path itself: libslurm on one thread of its own, every call with a deadline.
//!
//! libslurm's calls block (a dead controller makes them wait out its MessageTimeout and
//! retries), and the library is initialised once per process, so all calls run on one
//! dedicated thread and the caller waits at most its deadline. A call that misses it marks the
//! handle stalled: the thread stays stuck in the library, and every later call is refused at
//! once, so the queue falls back to the commands.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::ffi;
use super::policy::{self, Refusal};
use super::states;
use super::{directives::Request, NativeError};
use crate::jobqueue::JobState;

type Call = Box<dyn FnOnce() + Send>;

pub struct Native {
    calls: Mutex<mpsc::Sender<Call>>,
    timeout: Duration,
    stalled: Mutex<Option<Refusal>>,
    jobs: Arc<Mutex<JobTable>>,
    /// `slurm_api_version()` of the library loaded at run time.
    pub runtime_api: i64,
}

/// What the last `slurm_load_jobs` said about this user's jobs, kept so that a poll when
/// nothing changed (SLURM_NO_CHANGE_IN_DATA) costs the controller no job records.
#[derive(Default)]
struct JobTable {
    /// `last_update` of the last answer: the controller sends records only when a job
    /// changed after it.
    last_update: libc::time_t,
    loaded: bool,
    jobs: HashMap<String, (JobState, Option<String>)>,
}

/// The process's one handle: libslurm is initialised once (`slurm_init(NULL)`), whatever
/// number of queues use it.
static SHARED: std::sync::OnceLock<Result<Arc<Native>, Refusal>> = std::sync::OnceLock::new();

pub fn shared(timeout: Duration) -> Result<Arc<Native>, Refusal> {
    SHARED
        .get_or_init(|| {
            let conf = policy::config_path(std::env::var("SLURM_CONF").ok().as_deref());
            open(&conf, timeout)
        })
        .clone()
}

/// Checks `conf` (the configuration libslurm will read), then initialises the library on
/// its thread and compares its release with the bindings'.
fn open(conf: &std::path::Path, timeout: Duration) -> Result<Arc<Native>, Refusal> {
    // The first trap: never let libslurm look for a configuration that is not there.
    policy::check_config(conf)?;
    let mut native = Native::start(timeout)?;
    native.runtime_api = native
        .call("slurm_init", || {
            // SAFETY: NULL asks libslurm to read $SLURM_CONF or its default path, found
            // readable above; this runs once per process (`SHARED`), on the library's thread.
            unsafe { ffi::slurm_init(std::ptr::null()) };
            // SAFETY: no arguments, returns a number.
            let api = unsafe { ffi::slurm_api_version() };
            // A C long: 64 bits here, 32 on some targets.
            #[allow(clippy::useless_conversion)]
            i64::from(api)
        })
        .map_err(CallError::refusal)?;
    let built: i64 = ffi::BUILT_API.parse().unwrap_or(0);
    policy::check_api(native.runtime_api, built)?;
    Ok(Arc::new(native))
}

/// A library call that did not give its result.
enum CallError {
    /// Refused before it was handed to the library (an earlier call stalled).
    NotSent(Refusal),
    /// Handed over, and no answer by the deadline: it may still take effect.
    TimedOut(Refusal),
}

impl CallError {
    fn refusal(self) -> Refusal {
        match self {
            CallError::NotSent(r) | CallError::TimedOut(r) => r,
        }
    }
}

impl Native {
    /// The library's thread, nothing called yet.
    fn start(timeout: Duration) -> Result<Native, Refusal> {
        let (tx, rx) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("slurm-native".into())
            .spawn(move || {
                for call in rx {
                    call();
                }
            })
            .map_err(|_| Refusal::Stalled {
                call: "starting its thread",
                seconds: 0,
            })?;
        Ok(Native {
            calls: Mutex::new(tx),
            timeout,
            stalled: Mutex::new(None),
            jobs: Arc::default(),
            runtime_api: 0,
        })
    }

    /// Runs `f` on the library's thread and waits at most the deadline for its result.
    fn call<T: Send + 'static>(
        &self,
        name: &'static str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CallError> {
        if let Some(why) = self.stalled.lock().expect("stalled lock").clone() {
            return Err(CallError::NotSent(why));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self
            .calls
            .lock()
            .expect("calls lock")
            .send(Box::new(move || {
                let _ = tx.send(f());
            }));
        let stalled = Refusal::Stalled {
            call: name,
            seconds: self.timeout.as_secs(),
        };
        if sent.is_err() {
            return Err(CallError::NotSent(stalled));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(v) => Ok(v),
            Err(_) => {
                tracing::warn!(
                    "{stalled}: from now on this daemon uses sbatch/squeue/scancel for SLURM"
                );
                *self.stalled.lock().expect("stalled lock") = Some(stalled.clone());
                Err(CallError::TimedOut(stalled))
            }
        }
    }

    /// Submits `script` (its directives read into `req`) as `sbatch` would from this
    /// process: its environment, its working directory, its user.
    pub fn submit(
        &self,
        script: &str,
        script_path: &str,
        req: &Request,
    ) -> Result<String, NativeError> {
        let job = SubmitArgs::new(script, script_path, req).map_err(NativeError::Refused)?;
        match self.call("slurm_submit_batch_job", move || job.submit()) {
            Ok(r) => r,
            // It may have reached the controller before the deadline.
            Err(CallError::TimedOut(why)) => Err(NativeError::Uncertain(why.to_string())),
            Err(CallError::NotSent(why)) => Err(NativeError::Unavailable(why)),
        }
    }

    /// The states of `ids`; a job the controller no longer reports is gone.
    pub fn states(&self, ids: &[String]) -> Result<Vec<(String, JobState)>, NativeError> {
        self.refresh()?;
        let table = self.jobs.lock().expect("jobs lock");
        Ok(ids
            .iter()
            .map(|id| {
                let state = table.jobs.get(id).map_or(JobState::Gone, |(s, _)| *s);
                (id.clone(), state)
            })
            .collect())
    }

    /// Why each pending job of `ids` waits (absent: no reason given).
    pub fn pending_reasons(&self, ids: &[String]) -> Result<Vec<(String, String)>, NativeError> {
        self.refresh()?;
        let table = self.jobs.lock().expect("jobs lock");
        Ok(ids
            .iter()
            .filter_map(|id| match table.jobs.get(id) {
                Some((JobState::Pending, Some(why))) => Some((id.clone(), why.clone())),
                _ => None,
            })
            .collect())
    }

    fn refresh(&self) -> Result<(), NativeError> {
        let jobs = Arc::clone(&self.jobs);
        match self.call("slurm_load_jobs", move || load_jobs(&jobs)) {
            Ok(r) => r.map_err(NativeError::Failed),
            Err(e) => Err(NativeError::Unavailable(e.refusal())),
        }
    }

    /// Cancels each id (`123`, or one array element `123_4`); ids SLURM no longer knows or
    /// that already finished are not an error.
    pub fn cancel(&self, ids: &[String]) -> Result<(), NativeError> {
        let ids: Vec<CString> = ids
            .iter()
            .map(|id| CString::new(id.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| NativeError::Refused("a job id contains a NUL byte".into()))?;
        let failures = self
            .call("slurm_kill_job2", move || {
                let mut failures = Vec::new();
                for id in &ids {
                    // SAFETY: `id` is a NUL-terminated string that outlives the call; a NULL
                    // sibling means this cluster; SIGKILL with no flags is scancel's default.
                    let rc = unsafe {
                        ffi::slurm_kill_job2(id.as_ptr(), libc::SIGKILL as u16, 0, std::ptr::null())
                    };
                    if rc != 0 {
                        let errno = last_errno();
                        if !cancel_error_is_harmless(errno) {
                            failures.push(format!("{}: {}", id.to_string_lossy(), strerror(errno)));
                        }
                    }
                }
                failures
            })
            .map_err(|e| NativeError::Unavailable(e.refusal()))?;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NativeError::Failed(format!(
                "slurm_kill_job2 failed for {}",
                failures.join("; ")
            )))
        }
    }
}

fn last_errno() -> i32 {
    // SAFETY: reads the calling thread's errno.
    unsafe { ffi::slurm_get_errno() }
}

fn strerror(errno: i32) -> String {
    // SAFETY: slurm_strerror returns a pointer to a static string (or NULL).
    let p = unsafe { ffi::slurm_strerror(errno) };
    if p.is_null() {
        return format!("error {errno}");
    }
    // SAFETY: non-NULL, NUL-terminated, static.
    let text = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    format!("{text} (error {errno})")
}

/// A job that already ended, or that the controller has forgotten, needs no cancelling.
fn cancel_error_is_harmless(errno: i32) -> bool {
    errno == ffi::slurm_err_t_ESLURM_ALREADY_DONE as i32
        || errno == ffi::slurm_err_t_ESLURM_INVALID_JOB_ID as i32
}

/// Whether a failed submission may still have queued a job: the request left but its answer
/// never came (send, receive or socket errors). A refused connection or a refusal by the
/// controller queued nothing.
fn submit_error_may_have_queued(errno: i32) -> bool {
    use ffi::*;
    let uncertain = [
        slurm_err_t_SLURM_COMMUNICATIONS_SEND_ERROR,
        slurm_err_t_SLURM_COMMUNICATIONS_RECEIVE_ERROR,
        slurm_err_t_SLURM_COMMUNICATIONS_SHUTDOWN_ERROR,
        slurm_err_t_SLURMCTLD_COMMUNICATIONS_SEND_ERROR,
        slurm_err_t_SLURMCTLD_COMMUNICATIONS_RECEIVE_ERROR,
        slurm_err_t_SLURMCTLD_COMMUNICATIONS_SHUTDOWN_ERROR,
        slurm_err_t_SLURM_PROTOCOL_SOCKET_IMPL_ZERO_RECV_LENGTH,
        slurm_err_t_SLURM_PROTOCOL_SOCKET_IMPL_NEGATIVE_RECV_LENGTH,
        slurm_err_t_SLURM_PROTOCOL_SOCKET_IMPL_NOT_ALL_DATA_SENT,
        slurm_err_t_ESLURM_PROTOCOL_INCOMPLETE_PACKET,
        slurm_err_t_SLURM_PROTOCOL_SOCKET_IMPL_TIMEOUT,
    ];
    uncertain.iter().any(|&e| e as i32 == errno) || errno == libc::ETIMEDOUT
}

/// Reloads the job table unless nothing changed since the last answer.
fn load_jobs(table: &Mutex<JobTable>) -> Result<(), String> {
    let mut table = table.lock().expect("jobs lock");
    let since = if table.loaded { table.last_update } else { 0 };
    let mut msg: *mut ffi::job_info_msg_t = std::ptr::null_mut();
    // SAFETY: `msg` is a valid out-pointer; on success libslurm allocates the message, freed
    // below with its own function.
    let rc = unsafe { ffi::slurm_load_jobs(since, &mut msg, ffi::SHOW_ALL as u16) };
    if rc != 0 {
        let errno = last_errno();
        if errno == ffi::slurm_err_t_SLURM_NO_CHANGE_IN_DATA as i32 && table.loaded {
            return Ok(());
        }
        return Err(format!("slurm_load_jobs: {}", strerror(errno)));
    }
    let uid = nix::unistd::getuid().as_raw();
    let mut jobs = HashMap::new();
    // SAFETY: rc == 0, so `msg` points to a job_info_msg_t whose `job_array` holds
    // `record_count` records, alive until slurm_free_job_info_msg.
    let (last_update, records) = unsafe {
        let m = &*msg;
        let records: &[ffi::slurm_job_info_t] = if m.record_count == 0 || m.job_array.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(m.job_array, m.record_count as usize)
        };
        (m.last_update, records)
    };
    for r in records.iter().filter(|r| r.user_id == uid) {
        let state = states::job_state(r.job_state);
        let reason = (state == JobState::Pending)
            .then(|| reason_text(r.state_reason))
            .flatten();
        let entry = (state, reason);
        jobs.insert(r.job_id.to_string(), entry.clone());
        if r.array_job_id != 0 {
            // SAFETY: NULL or a NUL-terminated string inside `msg`.
            let pending_tasks = (!r.array_task_str.is_null()).then(|| {
                unsafe { CStr::from_ptr(r.array_task_str) }
                    .to_string_lossy()
                    .into_owned()
            });
            match pending_tasks.as_deref().and_then(states::array_tasks) {
                // A record for the array's pending elements not yet split off.
                Some(tasks) => {
                    jobs.insert(r.array_job_id.to_string(), entry.clone());
                    for t in tasks {
                        jobs.insert(format!("{}_{t}", r.array_job_id), entry.clone());
                    }
                }
                None if r.array_task_id != ffi::NO_VAL => {
                    jobs.insert(format!("{}_{}", r.array_job_id, r.array_task_id), entry);
                }
                None => {}
            }
        }
    }
    // SAFETY: `msg` came from slurm_load_jobs and is freed once; `records` is not used after.
    unsafe { ffi::slurm_free_job_info_msg(msg) };
    table.last_update = last_update;
    table.loaded = true;
    table.jobs = jobs;
    Ok(())
}

fn reason_text(reason: u16) -> Option<String> {
    // SAFETY: returns a static string for any value ("?" or similar for unknown ones).
    let p = unsafe { ffi::slurm_job_reason_string(u32::from(reason)) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated, static.
    let text = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    (!text.is_empty() && text != "None").then_some(text)
}

/// Everything one submission hands libslurm, owned, so its pointers stay valid for the call.
struct SubmitArgs {
    script: CString,
    argv0: CString,
    work_dir: CString,
    env: Vec<CString>,
    name: Option<CString>,
    std_out: Option<CString>,
    std_err: Option<CString>,
    partition: Option<CString>,
    account: Option<CString>,
    req: Request,
}

fn c(text: &str, what: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("the job's {what} contains a NUL byte"))
}

impl SubmitArgs {
    fn new(script: &str, script_path: &str, req: &Request) -> Result<Self, String> {
        let opt = |v: &Option<String>, what| v.as_deref().map(|s| c(s, what)).transpose();
        let work_dir =
            std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
        // As sbatch's default --export=ALL: the submitting process's environment.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.into_encoded_bytes();
                kv.push(b'=');
                kv.extend(v.into_encoded_bytes());
                CString::new(kv).ok()
            })
            .collect();
        Ok(SubmitArgs {
            script: c(script, "script")?,
            argv0: c(script_path, "script path")?,
            work_dir: c(&work_dir.to_string_lossy(), "working directory")?,
            env,
            name: opt(&req.name, "name")?,
            std_out: opt(&req.std_out, "output path")?,
            std_err: opt(&req.std_err, "error path")?,
            partition: opt(&req.partition, "partition")?,
            account: opt(&req.account, "account")?,
            req: req.clone(),
        })
    }

    fn submit(self) -> Result<String, NativeError> {
        let ptr = |s: &Option<CString>| {
            s.as_ref()
                .map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut c_char)
        };
        let mut env: Vec<*mut c_char> =
            self.env.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        env.push(std::ptr::null_mut());
        let mut argv = [self.argv0.as_ptr() as *mut c_char, std::ptr::null_mut()];
        // SAFETY: a zeroed job_desc_msg_t is only storage: slurm_init_job_desc_msg then sets
        // every field to its "not given" value, as sbatch does before filling it in.
        let mut desc: ffi::job_desc_msg_t = unsafe { std::mem::zeroed() };
        unsafe { ffi::slurm_init_job_desc_msg(&mut desc) };
        let r = &self.req;
        desc.script = self.script.as_ptr() as *mut c_char;
        desc.argc = 1;
        desc.argv = argv.as_mut_ptr();
        desc.work_dir = self.work_dir.as_ptr() as *mut c_char;
        desc.environment = env.as_mut_ptr();
        desc.env_size = (env.len() - 1) as u32;
        desc.user_id = nix::unistd::getuid().as_raw();
        desc.group_id = nix::unistd::getgid().as_raw();
        desc.name = ptr(&self.name);
        desc.std_out = ptr(&self.std_out);
        desc.std_err = ptr(&self.std_err);
        desc.partition = ptr(&self.partition);
        desc.account = ptr(&self.account);
        if let Some(n) = r.ntasks {
            desc.num_tasks = n;
        }
        if let Some(n) = r.nodes {
            desc.min_nodes = n;
            desc.max_nodes = n;
        }
        if let Some(c) = r.cpus_per_task {
            desc.cpus_per_task = c;
            desc.min_cpus = r.ntasks.unwrap_or(1).saturating_mul(u32::from(c));
        }
        if let Some(mb) = r.mem_per_node_mb {
            desc.pn_min_memory = mb;
        }
        if let Some(mb) = r.mem_per_cpu_mb {
            desc.pn_min_memory = mb | ffi::MEM_PER_CPU as u64;
        }
        if let Some(m) = r.time_minutes {
            desc.time_limit = m;
        }
        let mut resp: *mut ffi::submit_response_msg_t = std::ptr::null_mut();
        // SAFETY: `desc` points only into `self`, `env` and `argv`, all alive until the call
        // returns; libslurm copies what it sends. `resp` is a valid out-pointer.
        let rc = unsafe { ffi::slurm_submit_batch_job(&mut desc, &mut resp) };
        if rc != 0 || resp.is_null() {
            let errno = last_errno();
            let text = format!("slurm_submit_batch_job: {}", strerror(errno));
            return Err(if submit_error_may_have_queued(errno) {
                NativeError::Uncertain(text)
            } else {
                NativeError::Refused(text)
            });
        }
        // SAFETY: rc == 0 and `resp` non-NULL: a message libslurm allocated, freed once here.
        let id = unsafe {
            let id = (*resp).job_id;
            ffi::slurm_free_submit_response_response_msg(resp);
            id
        };
        Ok(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers the harmless/uncertain readings rely on are the headers' (they moved
    /// between releases before).
    #[test]
    fn error_readings_follow_the_headers() {
        assert!(cancel_error_is_harmless(
            ffi::slurm_err_t_ESLURM_ALREADY_DONE as i32
        ));
        assert!(cancel_error_is_harmless(
            ffi::slurm_err_t_ESLURM_INVALID_JOB_ID as i32
        ));
        assert!(!cancel_error_is_harmless(
            ffi::slurm_err_t_ESLURM_ACCESS_DENIED as i32
        ));
        assert!(submit_error_may_have_queued(
            ffi::slurm_err_t_SLURM_COMMUNICATIONS_RECEIVE_ERROR as i32
        ));
        // Never connected, or refused by the controller: certainly no job.
        assert!(!submit_error_may_have_queued(
            ffi::slurm_err_t_SLURMCTLD_COMMUNICATIONS_CONNECTION_ERROR as i32
        ));
        assert!(!submit_error_may_have_queued(
            ffi::slurm_err_t_ESLURM_INVALID_PARTITION_NAME as i32
        ));
    }

    /// The first trap: no readable configuration, no library call (which would stall a
    /// minute and exit this process); the refusal comes at once.
    #[test]
    fn without_a_configuration_the_library_is_never_called() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let err = open(&dir.path().join("slurm.conf"), Duration::from_secs(5)).err();
        assert!(matches!(err, Some(Refusal::NoConfig { .. })), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// The second: a call that does not return in time is given up, and the path is closed
    /// for every later call, which is refused without waiting.
    #[test]
    fn a_stalled_call_closes_the_native_path() {
        let native = Native::start(Duration::from_millis(200)).unwrap();
        assert_eq!(native.call("quick", || 7).ok(), Some(7));
        let slow = native.call("slow", || std::thread::sleep(Duration::from_secs(2)));
        assert!(matches!(
            slow,
            Err(CallError::TimedOut(Refusal::Stalled { call: "slow", .. }))
        ));
        let started = std::time::Instant::now();
        let next = native.call("next", || 1);
        assert!(matches!(
            next,
            Err(CallError::NotSent(Refusal::Stalled { call: "slow", .. }))
        ));
        assert!(started.elapsed() < Duration::from_millis(100));
        // A submission that stalls may have queued a job: uncertain, never retried blindly.
        let native = Native::start(Duration::from_millis(100)).unwrap();
        let _ = native.call("slow", || std::thread::sleep(Duration::from_millis(500)));
        let req = Request::default();
        assert!(matches!(
            native.submit("#!/bin/sh\n", "x.sh", &req),
            Err(NativeError::Unavailable(_))
        ));
    }

    /// On this machine's SLURM (RDASK_TEST_SLURM=1): the library opens, is the release the
    /// bindings were made for, and sees a job submitted through it; cancelling it works and
    /// the job leaves the running states.
    #[test]
    fn the_real_library_submits_reads_and_cancels() {
        if std::env::var("RDASK_TEST_SLURM").as_deref() != Ok("1") {
            eprintln!("NOT RUN: set RDASK_TEST_SLURM=1 (a SLURM with /etc/slurm/slurm.conf)");
            return;
        }
        let native = shared(Duration::from_secs(30)).expect("the native path opens");
        let built: i64 = ffi::BUILT_API.parse().unwrap();
        assert_eq!(native.runtime_api >> 16, built >> 16);
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let script = format!(
            "#!/bin/sh\n#SBATCH -J rdask-native-unit\n#SBATCH -t 2\n#SBATCH -o {0}/o\n\
             #SBATCH -e {0}/e\nsleep 60\n",
            dir.path().display()
        );
        let req = super::super::directives::read(&script).unwrap();
        let id = native.submit(&script, "unit.sh", &req).expect("submitted");
        let ids = vec![id.clone(), "999999999".to_string()];
        let states = native.states(&ids).unwrap();
        assert!(
            matches!(states[0].1, JobState::Pending | JobState::Running),
            "{states:?}"
        );
        assert_eq!(states[1].1, JobState::Gone);
        native.cancel(std::slice::from_ref(&id)).unwrap();
        // Cancelling what is gone is no error.
        native.cancel(&["999999999".to_string()]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let state = native.states(std::slice::from_ref(&id)).unwrap()[0].1;
            if state.is_finished() {
                assert!(
                    matches!(state, JobState::Cancelled | JobState::Gone),
                    "{state}"
                );
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still {state}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Array elements through the library: the states of `123_0` .. `123_2` (pending ones come
    /// as one record for the array), and cancelling one element leaves the others.
    #[test]
    fn the_real_library_reads_and_cancels_array_elements() {
        if std::env::var("RDASK_TEST_SLURM").as_deref() != Ok("1") {
            eprintln!("NOT RUN: set RDASK_TEST_SLURM=1 (a SLURM with /etc/slurm/slurm.conf)");
            return;
        }
        let native = shared(Duration::from_secs(30)).expect("the native path opens");
        let out = std::process::Command::new("sbatch")
            .args([
                "--parsable",
                "--array=0-2",
                "-J",
                "rdask-native-array",
                "-t",
                "2",
            ])
            .args(["-o", "/dev/null", "--hold", "--wrap", "sleep 60"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let job = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let ids: Vec<String> = (0..3).map(|i| format!("{job}_{i}")).collect();
        let states = native.states(&ids).unwrap();
        assert!(
            states.iter().all(|(_, s)| *s == JobState::Pending),
            "{states:?}"
        );
        // Held: the reason is the controller's word for it.
        let reasons = native.pending_reasons(&ids).unwrap();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons.iter().all(|(_, why)| why.contains("Held")),
            "{reasons:?}"
        );
        native.cancel(std::slice::from_ref(&ids[1])).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let states = native.states(&ids).unwrap();
            if states[1].1.is_finished() {
                assert_eq!(states[0].1, JobState::Pending, "{states:?}");
                assert_eq!(states[2].1, JobState::Pending, "{states:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{states:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
        native.cancel(&[job]).unwrap();
    }

    /// A submission the controller refuses is certain: no job.
    #[test]
    fn the_real_library_refuses_a_bad_partition_with_certainty() {
        if std::env::var("RDASK_TEST_SLURM").as_deref() != Ok("1") {
            eprintln!("NOT RUN: set RDASK_TEST_SLURM=1 (a SLURM with /etc/slurm/slurm.conf)");
            return;
        }
        let native = shared(Duration::from_secs(30)).expect("the native path opens");
        let script = "#!/bin/sh\n#SBATCH -p rdask-no-such-partition\n#SBATCH -o /dev/null\ntrue\n";
        let req = super::super::directives::read(script).unwrap();
        match native.submit(script, "bad.sh", &req) {
            Err(NativeError::Refused(why)) => assert!(why.contains("partition"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_bindings_know_which_library_they_were_made_for() {
        let built: i64 = ffi::BUILT_API.parse().unwrap();
        assert!(built >> 16 > 0, "BUILT_API {built}");
    }
}
