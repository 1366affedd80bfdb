//! Makes binaries that link libtorch find it at run time without LD_LIBRARY_PATH: an rpath to
//! the folder torch-sys linked against (passed on to the harness as DEP_MOBILEBENCH_TCH_
//! LIBTORCH_LIB), and `libtorch.so` kept as a dependency even though nothing references it,
//! so that a CUDA libtorch put first on LD_LIBRARY_PATH brings libtorch_cuda with it.
fn main() {
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:libtorch_lib={lib}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch,--pop-state");
}
