//! Replays every committed fuzz input (`fuzz/corpus/<target>/`) and every crash ever found
//! (`fuzz/regressions/<target>/`) through the properties the fuzz targets check, on the stable
//! toolchain: a fixed finding stays fixed without running the fuzzer.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let caught = std::panic::catch_unwind(|| check(&data));
            assert!(caught.is_ok(), "{} fails its property", f.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_committed_sale_input_holds() {
    assert!(replay("sale", formats::fuzzing::sale) >= 10);
}

#[test]
fn every_committed_row_input_holds() {
    assert!(replay("row", formats::fuzzing::row) >= 10);
}

#[test]
fn every_committed_config_input_holds() {
    assert!(replay("config", formats::fuzzing::config) >= 3);
}

#[test]
fn every_committed_schedule_input_holds() {
    assert!(replay("schedule", formats::fuzzing::schedule) >= 2);
}
