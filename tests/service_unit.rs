//! The systemd deployment files in `deploy/systemd/`: the template unit passes
//! `systemd-analyze verify` (Debian's systemd) with no warning at all, and the flags the
//! environment file gives `pitwall run` are ones this pitwall accepts.

mod support;

use std::process::{Command, Stdio};

use support::*;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd");

#[test]
fn the_template_unit_verifies_clean_with_systemd_analyze() {
    let unit = std::fs::read_to_string(format!("{DEPLOY}/pitwall@.service")).unwrap();
    for needed in ["KillSignal=SIGTERM", "Restart=on-failure", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "EnvironmentFile="] {
        assert!(unit.contains(needed), "the unit sets {needed}");
    }
    // Verified where the binary it starts exists (verify checks the executable).
    let dir = temp_dir();
    std::fs::write(dir.path().join("pitwall@.service"), unit.replace("/usr/local/bin/pitwall", env!("CARGO_BIN_EXE_pitwall"))).unwrap();
    let instance = dir.path().join("pitwall@0.service");
    let output = Command::new("systemd-analyze")
        .args(["verify", &path_str(&instance)])
        .output()
        .unwrap_or_else(|e| panic!("cannot run systemd-analyze ({e}); run scripts/setup.sh (Debian package systemd)"));
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "systemd-analyze verify: {} {said}", output.status);
}

#[test]
fn the_environment_file_gives_run_flags_this_pitwall_accepts() {
    let env = std::fs::read_to_string(format!("{DEPLOY}/pitwall.env")).unwrap();
    let settings: Vec<(&str, &str)> = env
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l}")))
        .collect();
    let get = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or_else(|| panic!("{key} is set"));
    for key in ["PITWALL_BROKERS", "PITWALL_BRIDGE_TOKEN", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        get(key);
    }
    // The unit's command line with the file's flags, against a broker that is not there: the
    // flags parse (no usage error, exit 2) and the job fails at its broker check instead.
    let mut args = vec!["run", "--spool", "/tmp/pitwall-unit-spool", "--video-out", "/tmp/pitwall-unit-videos"];
    args.extend(get("PITWALL_RUN_ARGS").split_whitespace());
    let dead = format!("127.0.0.1:{}", free_port());
    args.extend(["--brokers", &dead]);
    let child =
        pitwall_command(&args).env("PITWALL_BRIDGE_TOKEN", get("PITWALL_BRIDGE_TOKEN")).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let output = wait_with_timeout(child, "pitwall run with the unit's flags", COMMAND_TIMEOUT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(2), "a usage error: {stderr}");
    assert!(!output.status.success() && stderr.contains(&dead), "fails at the broker it cannot reach: {stderr}");
}
