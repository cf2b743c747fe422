//! The Prometheus alerting rules shipped in `grafana/alerts/`: Debian's `promtool` checks the
//! file and runs its unit tests (`pitwall-rules.test.yml`), which fire each rule on series
//! written for it and keep it quiet on a near miss. `prometheus_scrape.rs` loads the same file
//! into a real Prometheus scraping a job: every rule evaluates, none fires on a healthy job.

use std::process::Command;

fn promtool(args: &[&str]) -> String {
    let binary = std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into());
    let output = Command::new(&binary)
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/alerts"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{binary}` ({e}); run scripts/setup.sh (Debian package prometheus)"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {}: {text}", args.join(" "));
    text
}

#[test]
fn the_alert_rules_are_valid_and_each_fires_only_on_its_condition() {
    let checked = promtool(&["check", "rules", "pitwall-rules.yml"]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "pitwall-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every rule has a unit test, and each test names a rule.
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/alerts/pitwall-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/alerts/pitwall-rules.test.yml")).unwrap();
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(names.len(), 8);
    for name in names {
        assert!(tests.contains(&format!("alertname: {name}")), "{name} has no promtool test");
    }
}
