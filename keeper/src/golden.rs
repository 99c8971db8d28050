//! Golden-file assertions for the rendered configuration files (tests only).
//!
//! Each expected output lives in `src/golden/<name>`. Run the tests with `UPDATE_GOLDEN=1` to
//! (re)write the files after an intended change, then review the diff like any code change.

use std::path::PathBuf;

/// Compares `actual` with `src/golden/<name>`, or writes it when `UPDATE_GOLDEN` is set.
pub fn assert_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read golden file {}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    assert!(
        expected == actual,
        "{name} differs from its golden file {}; run with UPDATE_GOLDEN=1 if the change is intended.\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}
