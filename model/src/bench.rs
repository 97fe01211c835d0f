//! `vr-model bench`: each scenario checked in a child process of its own, so
//! that its peak memory is its own, and optionally stateright's Raft example
//! beside it, measured the same way.

use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One benchmark row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The scenario's name, or "stateright raft (N servers)".
    pub name: String,
    pub unique_states: u64,
    pub states: u64,
    pub depth: u64,
    /// Wall-clock seconds of the child process, start-up included.
    pub seconds: f64,
    pub unique_per_second: f64,
    /// The child's peak resident memory, in MiB.
    pub peak_mib: f64,
    /// For a scenario: "pass" or "FAIL"; for the peer: "done".
    pub result: String,
}

/// What a child process left behind.
pub struct Child {
    pub stdout: String,
    pub seconds: f64,
    pub peak_mib: f64,
    pub success: bool,
}

/// Runs `program` with `args` to completion, measuring its wall-clock time
/// and, from the kernel's accounting of that one child, its peak resident
/// memory.
pub fn run_child(program: &Path, args: &[String]) -> Result<Child, String> {
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; the pointers are
    // to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(format!(
            "waiting for {}: {}",
            program.display(),
            std::io::Error::last_os_error()
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    let stdout = reader.join().unwrap_or_default();
    Ok(Child {
        stdout,
        seconds,
        // Linux reports ru_maxrss in KiB.
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    })
}

/// A scenario's row from the JSON that `vr-model check --json` printed.
pub fn scenario_row(name: &str, child: &Child) -> Result<Row, String> {
    let json: serde_json::Value =
        serde_json::from_str(&child.stdout).map_err(|e| format!("{name}: no JSON report ({e})"))?;
    let number = |key: &str| {
        json[key]
            .as_u64()
            .ok_or_else(|| format!("{name}: no {key} in the report"))
    };
    let counts = [
        number("unique_states")?,
        number("states")?,
        number("max_depth")?,
    ];
    Ok(Row::new(name, child, counts, "pass"))
}

impl Row {
    /// A row of `[unique, total, depth]` from a child's measurements;
    /// `result` when it exited 0, FAIL otherwise.
    fn new(
        name: &str,
        child: &Child,
        [unique_states, states, depth]: [u64; 3],
        result: &str,
    ) -> Row {
        Row {
            name: name.to_string(),
            unique_states,
            states,
            depth,
            seconds: child.seconds,
            unique_per_second: unique_states as f64 / child.seconds.max(1e-9),
            peak_mib: child.peak_mib,
            result: if child.success { result } else { "FAIL" }.to_string(),
        }
    }
}

/// The peer's row from the last "Done. states=S, unique=U, depth=D, sec=T"
/// line that stateright's `WriteReporter` prints.
pub fn raft_row(name: &str, child: &Child) -> Result<Row, String> {
    let line = child
        .stdout
        .lines()
        .rfind(|l| l.starts_with("Done."))
        .ok_or_else(|| format!("{name}: no \"Done.\" line in its output"))?;
    let field = |key: &str| -> Result<u64, String> {
        line.split([' ', ','])
            .find_map(|part| part.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name}: no {key} in {line:?}"))
    };
    let counts = [field("unique=")?, field("states=")?, field("depth=")?];
    Ok(Row::new(name, child, counts, "done"))
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<28} {:>12} {:>12} {:>6} {:>9} {:>12} {:>10}  {}\n",
        "scenario", "unique", "total", "depth", "seconds", "unique/s", "peak MiB", "result"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:>12} {:>12} {:>6} {:>9.1} {:>12.0} {:>10.0}  {}\n",
            r.name,
            r.unique_states,
            r.states,
            r.depth,
            r.seconds,
            r.unique_per_second,
            r.peak_mib,
            r.result
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(stdout: &str) -> Child {
        Child {
            stdout: stdout.to_string(),
            seconds: 2.0,
            peak_mib: 10.0,
            success: true,
        }
    }

    #[test]
    fn the_peer_s_last_done_line_is_read() {
        let out = "Model checking Raft with 3 servers.\n\
            Checking. states=4, unique=4, depth=1\n\
            Done. states=1000, unique=600, depth=12, sec=1\n\
            Discovered \"x\" example Path[3]:\n";
        let row = raft_row("raft", &child(out)).unwrap();
        assert_eq!((row.unique_states, row.states, row.depth), (600, 1000, 12));
        assert_eq!(row.unique_per_second, 300.0);
        assert!(raft_row("raft", &child("Checking. states=4")).is_err());
    }

    #[test]
    fn a_scenario_report_is_read_from_its_json() {
        let out = r#"{"states": 40, "unique_states": 20, "max_depth": 5, "seconds": 1.0}"#;
        let row = scenario_row("default", &child(out)).unwrap();
        assert_eq!((row.unique_states, row.states, row.depth), (20, 40, 5));
        assert!(scenario_row("default", &child("not json")).is_err());
    }

    #[test]
    fn a_child_s_time_memory_and_exit_status_are_measured() {
        let sh = Path::new("/bin/sh");
        let ok = run_child(sh, &["-c".into(), "echo hello".into()]).unwrap();
        assert_eq!(ok.stdout, "hello\n");
        assert!(ok.success && ok.peak_mib > 0.0 && ok.seconds > 0.0);
        let failed = run_child(sh, &["-c".into(), "exit 3".into()]).unwrap();
        assert!(!failed.success);
    }
}
