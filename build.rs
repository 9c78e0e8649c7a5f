//! Build script: only the `slurm-native` feature needs one. It generates the libslurm bindings
//! from the installed `slurm/slurm.h` (the C ABI changes between SLURM releases, so bindings
//! made elsewhere would silently misread the structures), links libslurm, and records which
//! library API the bindings were made against (see `jobqueue::slurm_native::policy`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "slurm-native")]
    slurm::generate();
}

#[cfg(feature = "slurm-native")]
mod slurm {
    use std::path::{Path, PathBuf};

    /// Where Debian (and most distributions) put the headers and the library.
    const INCLUDE_DIRS: &[&str] = &["/usr/include", "/usr/local/include"];
    const LIB_DIRS: &[&str] = &[
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ];

    pub fn generate() {
        // SLURM_INCLUDE_DIR / SLURM_LIB_DIR name a site's own installation (e.g. /opt/slurm).
        println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
        println!("cargo:rerun-if-env-changed=SLURM_LIB_DIR");
        let include = dir_from_env("SLURM_INCLUDE_DIR", INCLUDE_DIRS, "slurm/slurm.h")
            .unwrap_or_else(|| {
                panic!(
                "feature slurm-native: slurm/slurm.h not found in {INCLUDE_DIRS:?}; install the \
                 headers (Debian: apt-get install libslurm-dev) or set SLURM_INCLUDE_DIR, or \
                 build without the feature"
            )
            });
        let lib = dir_from_env("SLURM_LIB_DIR", LIB_DIRS, "libslurm.so").unwrap_or_else(|| {
            panic!(
                "feature slurm-native: libslurm.so not found in {LIB_DIRS:?}; install \
                 libslurm-dev or set SLURM_LIB_DIR, or build without the feature"
            )
        });
        let header = include.join("slurm/slurm.h");
        println!("cargo:rerun-if-changed={}", header.display());
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-lib=dylib=slurm");

        // The library's API number as its file name says (libslurm.so.38.0.0 -> 38.0.0, the
        // same numbers slurm_api_version() packs): the runtime library is compared with it.
        let api = std::fs::canonicalize(lib.join("libslurm.so"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .and_then(|n| api_of_file_name(&n))
            .unwrap_or(0);
        println!("cargo:rustc-env=RDASK_SLURM_BUILT_API={api}");

        let bindings = bindgen::Builder::default()
            .header_contents(
                "rdask_slurm.h",
                "#include <slurm/slurm.h>\n#include <slurm/slurm_errno.h>\n",
            )
            .clang_arg(format!("-I{}", include.display()))
            // Only what we call: keeps generation fast and the surface small.
            .allowlist_function("slurm_init")
            .allowlist_function("slurm_api_version")
            .allowlist_function("slurm_init_job_desc_msg")
            .allowlist_function("slurm_submit_batch_job")
            .allowlist_function("slurm_free_submit_response_response_msg")
            .allowlist_function("slurm_load_jobs")
            .allowlist_function("slurm_free_job_info_msg")
            .allowlist_function("slurm_kill_job2")
            .allowlist_function("slurm_get_errno")
            .allowlist_function("slurm_strerror")
            .allowlist_var("SLURM_VERSION_NUMBER")
            .allowlist_var("NO_VAL")
            .allowlist_var("NO_VAL16")
            .allowlist_var("MEM_PER_CPU")
            .allowlist_var("SHOW_ALL")
            .allowlist_var("JOB_STATE_BASE")
            // The state flags are SLURM_BIT(n) macros, which bindgen cannot evaluate: they are
            // spelt out in slurm_native::states.
            .allowlist_type("job_states")
            .allowlist_type("slurm_err_t")
            .allowlist_type("job_info_msg_t")
            .allowlist_type("job_desc_msg_t")
            .allowlist_type("submit_response_msg_t")
            .layout_tests(false)
            .generate_comments(false)
            .generate()
            .expect("feature slurm-native: bindgen could not read slurm/slurm.h");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        bindings
            .write_to_file(out.join("slurm_bindings.rs"))
            .expect("writing the slurm bindings");
    }

    fn dir_from_env(var: &str, defaults: &[&str], probe: &str) -> Option<PathBuf> {
        if let Ok(d) = std::env::var(var) {
            return Some(PathBuf::from(d));
        }
        defaults
            .iter()
            .map(Path::new)
            .find(|d| d.join(probe).exists())
            .map(Path::to_path_buf)
    }

    /// "libslurm.so.38.0.0" -> SLURM_VERSION_NUM(38, 0, 0).
    fn api_of_file_name(name: &str) -> Option<i64> {
        let rest = name.strip_prefix("libslurm.so.")?;
        let mut parts = rest.split('.').map(|p| p.parse::<i64>().ok());
        let a = parts.next()??;
        let b = parts.next().flatten().unwrap_or(0);
        let c = parts.next().flatten().unwrap_or(0);
        Some((a << 16) + (b << 8) + c)
    }
}
