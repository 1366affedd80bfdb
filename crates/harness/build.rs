//! Records the git commit and cargo profile the harness is built from (summary CSV columns),
//! and, with the tch backend, lets `bench` find libtorch at run time (see that crate's build
//! script: an rpath to the libtorch it was linked against, and libtorch.so kept as a
//! dependency so that a CUDA libtorch on LD_LIBRARY_PATH brings its CUDA library).
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let suffix = if dirty { "+dirty" } else { "" };
    println!("cargo:rustc-env=MOBILEBENCH_COMMIT={commit}{suffix}");
    println!(
        "cargo:rustc-env=MOBILEBENCH_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
    }
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(lib) = std::env::var("DEP_MOBILEBENCH_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch,--pop-state");
    }
}
