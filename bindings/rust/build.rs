//! Links the libclmoe under test: `CLMOE_LIB_DIR` (a build tree or an
//! install's lib directory), else what `pkg-config --libs clmoe` says, else
//! the linker's default search path. The directory is also recorded as the
//! run-time search path, so tests and examples load that very library.
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLMOE_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let mut dirs: Vec<String> = Vec::new();
    if let Ok(dir) = env::var("CLMOE_LIB_DIR") {
        dirs.push(dir);
    } else if let Ok(out) = Command::new("pkg-config")
        .args(["--libs-only-L", "clmoe"])
        .output()
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            for flag in text.split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    dirs.push(dir.to_string());
                }
            }
        }
    }
    for dir in &dirs {
        println!("cargo:rustc-link-search=native={}", dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
    println!("cargo:rustc-link-lib=dylib=clmoe");
}
