//! Locates the binaries under test. Integration-test executables live in
//! `<target>/<profile>/deps/`, and cargo puts the workspace binaries one level
//! up, in `<target>/<profile>/`; `STOLON_BIN_DIR` overrides this, e.g. to test
//! release builds or an installed copy.
//!
//! Cargo does not build other packages' binaries for an integration test of
//! this crate, so a missing binary means `cargo build --workspace` was not run
//! first; [`bin_path`] says so instead of failing later with "No such file".

use std::path::PathBuf;

/// Binary name of the keeper.
pub const KEEPER: &str = "stolon-keeper";
/// Binary name of the sentinel.
pub const SENTINEL: &str = "stolon-sentinel";
/// Binary name of the proxy.
pub const PROXY: &str = "stolon-proxy";
/// Binary name of the admin CLI.
pub const STOLONCTL: &str = "stolonctl";

/// The directory holding the binaries under test.
///
/// # Panics
/// If the current executable's path cannot be read and `STOLON_BIN_DIR` is unset.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOLON_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("cannot locate the test executable ({e}); set STOLON_BIN_DIR"),
    };
    let Some(dir) = exe.parent() else {
        panic!(
            "test executable {} has no parent dir; set STOLON_BIN_DIR",
            exe.display()
        );
    };
    // Test executables sit in `deps/`; anything else (a binary run by hand)
    // is taken to sit next to the binaries already.
    match (dir.file_name(), dir.parent()) {
        (Some(name), Some(profile_dir)) if name == "deps" => profile_dir.to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// Full path of binary `name` (e.g. [`STOLONCTL`]).
///
/// # Panics
/// If the binary does not exist, with a message saying how to build it.
pub fn bin_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "binary under test {} not found; run `cargo build --workspace` before the \
             integration tests, or point STOLON_BIN_DIR at the directory holding it",
            path.display()
        );
    }
    path
}
