//! The `switchboard` binary's commands, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

const DEMO: &str = include_str!("../config/demo.toml");

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the switchboard binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write config");
    path.display().to_string()
}

#[test]
fn check_accepts_the_demo_config_with_a_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "clinic.toml", DEMO);
    let out = switchboard(&["check", &path]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{path}: ok — 3 agents, 3 queues, 1 menu, 2 users\n")
    );
}

#[test]
fn check_reports_every_problem_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = DEMO
        .replacen("start = \"main\"", "start = \"mian\"", 1)
        .replacen("ring_cycle_ms = 5000 ", "ring_cycle_ms = 0    ", 1)
        .replacen("password = \"demo-1003\"", "password = \"\"", 1);
    let path = write(dir.path(), "clinic.toml", &bad);
    let out = switchboard(&["check", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{path}:48:12: agent `1003` has an empty password"),
            format!("{path}:56:17: ring_cycle_ms must be above 0"),
            format!("{path}:81:9: ivr.start names unknown menu `mian`"),
        ]
    );
}

#[test]
fn check_reports_syntax_errors_with_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        dir.path(),
        "broken.toml",
        "[clinic]\nname = \"unterminated\n",
    );
    let out = switchboard(&["check", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&format!("{path}:2:")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_of_a_missing_file_fails_cleanly() {
    let out = switchboard(&["check", "/nonexistent/clinic.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("switchboard: /nonexistent/clinic.toml: cannot read: "),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn default_config_prints_the_commented_demo_which_passes_check() {
    let out = switchboard(&["default-config"]);
    assert!(out.status.success());
    let printed = text(&out.stdout);
    assert_eq!(printed, DEMO);
    assert!(printed.starts_with("# Switchboard configuration"));

    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "clinic.toml", &printed);
    let out = switchboard(&["check", &path]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
}

#[test]
fn serve_refuses_a_bad_config_without_panicking() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        dir.path(),
        "clinic.toml",
        &DEMO.replacen("[http]", "[web]", 1),
    );
    let out = switchboard(&["serve", "--config", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{path}:24:2: unknown section `web`")),
        "{stderr}"
    );
    assert!(stderr.contains("not starting"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn patients_import_reports_each_rejected_row_and_the_pop_store_has_the_good_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("clinic.db");
    let config = DEMO.replacen(
        "database = \"data/switchboard.db\"",
        &format!("database = {:?}", db.display().to_string()),
        1,
    );
    assert_ne!(config, DEMO, "the demo names its database");
    let config = write(dir.path(), "clinic.toml", &config);
    let csv = write(
        dir.path(),
        "patients.csv",
        "phone,name,age,tags,preferred_language\n\
         13900000021,Demo Import One,40,asthma;braces,zh\n\
         13900000022,Demo Import Two,x,,\n\
         13900000023,Demo Import Three,35,,fr\n",
    );
    let out = switchboard(&["patients", "import", &csv, "--config", &config]);
    assert_eq!(out.status.code(), Some(1), "rejected rows fail the command");
    assert_eq!(
        text(&out.stdout),
        format!(
            "{csv}:3: rejected: age \"x\": a whole number\n\
             {csv}:4: rejected: preferred_language \"fr\": one of zh, en\n\
             {csv}: 1 imported, 2 rejected\n"
        )
    );
    let storage = switchboard::storage::Storage::open(&db.display().to_string()).expect("db");
    let p = storage
        .patient_by_phone("13900000021")
        .expect("read")
        .expect("imported");
    assert_eq!((p.name.as_str(), p.tags.len()), ("Demo Import One", 2));
    let unknown = write(dir.path(), "bad.csv", "phone,nom\n1,2\n");
    let out = switchboard(&["patients", "import", &unknown, "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown column \"nom\"")
            && text(&out.stderr).contains("nothing imported"),
        "{}",
        text(&out.stderr)
    );
}
