//! The command line as a user meets it: help, version, and one clear line for bad input.

use std::process::Command;

fn jobs(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let dir = std::env::temp_dir();
    let mut c = Command::new(env!("CARGO_BIN_EXE_jobs"));
    c.args(args)
        .current_dir(dir)
        .env_remove("JOBS_DATABASE_URL");
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_subcommand_and_version_works() {
    let (ok, out, _) = jobs(&["--help"], &[]);
    assert!(ok);
    for sub in ["init", "generate", "ingest", "export-json", "config"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing from:\n{out}"
        );
    }
    let (ok, out, _) = jobs(&["--version"], &[]);
    assert!(ok);
    assert_eq!(out.trim(), format!("jobs {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_no_panic() {
    /// (arguments, environment, what the one error line must say)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (
            &["--database-url", "oracle://x/y", "init"],
            &[],
            "unsupported scheme",
        ),
        (
            &["--database-url", "mysql://root@127.0.0.1:1/shop", "init"],
            &[],
            "database mysql://root@127.0.0.1:1/shop: connect",
        ),
        (
            &[
                "--database-url",
                "sqlite:///nonexistent-dir/x/y.db",
                "ingest",
                "--once",
            ],
            &[],
            "database sqlite:///nonexistent-dir/x/y.db: connect",
        ),
        (
            &[
                "--brokers",
                "127.0.0.1:1",
                "--database-url",
                "sqlite:///tmp/jobs-cli-test.db",
                "ingest",
                "--once",
            ],
            &[],
            "kafka 127.0.0.1:1",
        ),
        (
            &["--config", "/nonexistent/jobs.toml", "config"],
            &[],
            "config file /nonexistent/jobs.toml does not exist",
        ),
        (&["config"], &[("JOBS_KAFKA__BROKRS", "x")], "brokrs"),
        (
            &["config"],
            &[("JOBS_INGEST__BATCH_SIZE", "lots")],
            "batch_size",
        ),
    ];
    for (args, envs, needle) in cases {
        let (ok, _, err) = jobs(args, envs);
        assert!(!ok, "{args:?} should fail");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: one error line expected, got:\n{err}"
        );
        assert!(
            lines[0].to_lowercase().contains(&needle.to_lowercase()),
            "{args:?}: {:?} lacks {needle:?}",
            lines[0]
        );
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    }
}

#[test]
fn config_shows_the_layers() {
    let (ok, out, err) = jobs(
        &["--brokers", "flag:9092", "config"],
        &[("JOBS_LAKE", "s3://bucket/lake")],
    );
    assert!(ok, "{err}");
    assert!(out.contains("brokers = \"flag:9092\""), "{out}");
    assert!(out.contains("lake = \"s3://bucket/lake\""), "{out}");
    assert!(out.contains("database_url = \"sqlite://jobs.db\""), "{out}");
}
