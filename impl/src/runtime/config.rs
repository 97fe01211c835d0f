//! The cluster configuration file (TOML) and the runtime's timer settings.
//!
//! ```toml
//! cluster_id = 1
//! key_file = "cluster.key"
//!
//! [[replica]]
//! id = 0
//! address = "127.0.0.1:7000"
//! ```

use super::wire;
use crate::core::{ATTEMPTS_MAX_DEFAULT, CLIENT_TABLE_MAX_DEFAULT, Config, ReplicaId, Timer};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every replica's id and address, and the cluster's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Datagrams carrying another cluster id are dropped.
    pub cluster_id: u32,
    /// Replica addresses, indexed by replica id.
    pub addresses: Vec<SocketAddr>,
    /// How long each timer runs: the file's optional `[timers]` table, or
    /// the defaults.
    pub timers: Settings,
    /// Executed entries between checkpoints: the file's optional
    /// `checkpoint_interval`, or [`wire::CHECKPOINT_INTERVAL`].
    pub checkpoint_interval: u64,
    /// The bound on client-table rows (client sessions): the file's
    /// optional `client_table_max`, or [`CLIENT_TABLE_MAX_DEFAULT`]
    /// (spec/protocol.md, "Client sessions").
    pub client_table_max: u64,
    /// Whether replicas keep their log, view state and checkpoints on disk
    /// (the file's `durable`, default true; spec/protocol.md, "Durability").
    pub durable: bool,
    /// Where each replica keeps its state (durable mode) or its start
    /// marker: `<data_dir>/replica-<id>`. The file's `data_dir`, relative
    /// to the file; default `vr-data` beside it.
    pub data_dir: PathBuf,
    /// The file holding the cluster key (`key_file`), which replicas and
    /// trusted clients tag and check every datagram with; a relative path
    /// in a file is resolved against the file's directory by [`Self::load`].
    pub key_file: Option<PathBuf>,
}

/// The default `data_dir`.
pub const DATA_DIR_DEFAULT: &str = "vr-data";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    cluster_id: u32,
    #[serde(rename = "replica", default)]
    replicas: Vec<FileReplica>,
    #[serde(default)]
    timers: FileTimers,
    checkpoint_interval: Option<u64>,
    client_table_max: Option<u64>,
    durable: Option<bool>,
    data_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// `[timers]`: each in milliseconds; a missing one keeps its default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTimers {
    heartbeat_ms: Option<u64>,
    primary_timeout_ms: Option<u64>,
    view_change_timeout_ms: Option<u64>,
    resend_ms: Option<u64>,
    recovery_retry_ms: Option<u64>,
}

/// No timer runs longer than this: a longer one is surely a mistake.
const TIMER_MAX_MS: u64 = 3_600_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReplica {
    id: u8,
    address: String,
}

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigFileError {
    Read { path: String, error: std::io::Error },
    Parse(String),
    NoReplicas,
    EvenReplicaCount(usize),
    TooManyReplicas(usize),
    DuplicateId(u8),
    MissingId(u8),
    BadAddress { id: u8, address: String },
    DuplicateAddress(SocketAddr),
    UnknownId { id: u8, replica_count: usize },
    BadTimer(String),
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigFileError::Read { path, error } => write!(f, "cannot read {path}: {error}"),
            ConfigFileError::Parse(message) => write!(f, "invalid configuration: {message}"),
            ConfigFileError::NoReplicas => write!(f, "the configuration names no replica"),
            ConfigFileError::EvenReplicaCount(n) => write!(
                f,
                "a cluster needs an odd number of replicas (2f+1), the configuration has {n}"
            ),
            ConfigFileError::TooManyReplicas(n) => {
                write!(f, "{n} replicas: at most 255 are supported")
            }
            ConfigFileError::DuplicateId(id) => write!(f, "replica id {id} appears twice"),
            ConfigFileError::MissingId(id) => write!(
                f,
                "replica ids must be 0, 1, 2, ... without gaps: {id} is missing"
            ),
            ConfigFileError::BadAddress { id, address } => write!(
                f,
                "replica {id}: {address:?} is not an address like 127.0.0.1:7000 (a specific IP and a non-zero port)"
            ),
            ConfigFileError::DuplicateAddress(address) => {
                write!(f, "address {address} is given to two replicas")
            }
            ConfigFileError::UnknownId { id, replica_count } => write!(
                f,
                "replica id {id} is not in the configuration (ids 0..{replica_count})"
            ),
            ConfigFileError::BadTimer(message) => write!(f, "[timers]: {message}"),
        }
    }
}

impl std::error::Error for ConfigFileError {}

impl ClusterConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let mut config = ClusterConfig::parse(&text)?;
        // Relative paths are relative to the file, not to the working
        // directory of whoever starts the replica.
        let file_dir = path.parent().unwrap_or(Path::new(""));
        config.data_dir = file_dir.join(&config.data_dir);
        if let Some(key_file) = &config.key_file
            && key_file.is_relative()
        {
            config.key_file = Some(file_dir.join(key_file));
        }
        Ok(config)
    }

    /// Parses and validates a configuration.
    pub fn parse(text: &str) -> Result<ClusterConfig, ConfigFileError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigFileError::Parse(e.to_string()))?;
        let mut ids = BTreeSet::new();
        for replica in &file.replicas {
            if !ids.insert(replica.id) {
                return Err(ConfigFileError::DuplicateId(replica.id));
            }
        }
        let mut replicas = file.replicas;
        replicas.sort_by_key(|r| r.id);
        let mut addresses = Vec::new();
        for (expected, replica) in replicas.iter().enumerate() {
            if usize::from(replica.id) != expected {
                return Err(ConfigFileError::MissingId(expected as u8));
            }
            let address = replica
                .address
                .parse()
                .map_err(|_| ConfigFileError::BadAddress {
                    id: replica.id,
                    address: replica.address.clone(),
                })?;
            addresses.push(address);
        }
        let mut config = ClusterConfig::new(file.cluster_id, addresses)?;
        config.timers = file.timers.resolve()?;
        match file.checkpoint_interval {
            Some(0) => {
                return Err(ConfigFileError::Parse(
                    "checkpoint_interval must be at least 1".into(),
                ));
            }
            Some(interval) => config.checkpoint_interval = interval,
            None => {}
        }
        match file.client_table_max {
            Some(0) => {
                return Err(ConfigFileError::Parse(
                    "client_table_max must be at least 1".into(),
                ));
            }
            Some(max) => config.client_table_max = max,
            None => {}
        }
        config.durable = file.durable.unwrap_or(true);
        if let Some(dir) = file.data_dir {
            config.data_dir = dir;
        }
        config.key_file = file.key_file;
        Ok(config)
    }

    /// A configuration from its parts, validated.
    pub fn new(
        cluster_id: u32,
        addresses: Vec<SocketAddr>,
    ) -> Result<ClusterConfig, ConfigFileError> {
        let n = addresses.len();
        if n == 0 {
            return Err(ConfigFileError::NoReplicas);
        }
        if n > 255 {
            return Err(ConfigFileError::TooManyReplicas(n));
        }
        if n.is_multiple_of(2) {
            return Err(ConfigFileError::EvenReplicaCount(n));
        }
        for (id, address) in addresses.iter().enumerate() {
            if address.ip().is_unspecified() || address.port() == 0 {
                return Err(ConfigFileError::BadAddress {
                    id: id as u8,
                    address: address.to_string(),
                });
            }
        }
        let mut seen = BTreeSet::new();
        for address in &addresses {
            if !seen.insert(*address) {
                return Err(ConfigFileError::DuplicateAddress(*address));
            }
        }
        Ok(ClusterConfig {
            cluster_id,
            addresses,
            timers: Settings::default(),
            checkpoint_interval: wire::CHECKPOINT_INTERVAL,
            client_table_max: CLIENT_TABLE_MAX_DEFAULT,
            durable: true,
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            key_file: None,
        })
    }

    /// A loopback cluster of `replicas` on consecutive ports from `port`.
    pub fn loopback(
        cluster_id: u32,
        replicas: u8,
        port: u16,
    ) -> Result<ClusterConfig, ConfigFileError> {
        let addresses = (0..replicas)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], port + u16::from(i))))
            .collect();
        ClusterConfig::new(cluster_id, addresses)
    }

    /// The number of replicas.
    pub fn replica_count(&self) -> u8 {
        self.addresses.len() as u8
    }

    /// The address of replica `id`.
    pub fn address(&self, id: ReplicaId) -> Option<SocketAddr> {
        self.addresses.get(usize::from(id.0)).copied()
    }

    /// primary(v) = v mod n.
    pub fn primary(&self, view: crate::core::View) -> ReplicaId {
        view.primary(self.replica_count())
    }

    /// The replica whose configured address is `address`.
    pub fn replica_at(&self, address: SocketAddr) -> Option<ReplicaId> {
        self.addresses
            .iter()
            .position(|a| *a == address)
            .map(|i| ReplicaId(i as u8))
    }

    /// The core's configuration for replica `id`.
    pub fn core_config(&self, id: u8) -> Result<Config, ConfigFileError> {
        Config::with_settings(
            self.replica_count(),
            ReplicaId(id),
            ATTEMPTS_MAX_DEFAULT,
            wire::STATE_TRANSFER_ENTRIES_MAX,
        )
        .and_then(|config| config.with_message_weight_max(wire::MESSAGE_WEIGHT_MAX))
        .and_then(|config| config.with_checkpoint_interval(self.checkpoint_interval))
        .and_then(|config| config.with_client_table_max(self.client_table_max))
        .map_err(|_| ConfigFileError::UnknownId {
            id,
            replica_count: self.addresses.len(),
        })
    }

    /// The configuration as a file.
    pub fn to_toml(&self) -> String {
        let mut text = format!("cluster_id = {}\n", self.cluster_id);
        if let Some(key_file) = &self.key_file {
            text.push_str(&format!(
                "key_file = {}\n",
                toml::Value::String(key_file.display().to_string())
            ));
        }
        if self.checkpoint_interval != wire::CHECKPOINT_INTERVAL {
            text.push_str(&format!(
                "checkpoint_interval = {}\n",
                self.checkpoint_interval
            ));
        }
        if self.client_table_max != CLIENT_TABLE_MAX_DEFAULT {
            text.push_str(&format!("client_table_max = {}\n", self.client_table_max));
        }
        if !self.durable {
            text.push_str("durable = false\n");
        }
        if self.data_dir != Path::new(DATA_DIR_DEFAULT) {
            text.push_str(&format!(
                "data_dir = {:?}\n",
                self.data_dir.display().to_string()
            ));
        }
        for (id, address) in self.addresses.iter().enumerate() {
            text.push_str(&format!(
                "\n[[replica]]\nid = {id}\naddress = \"{address}\"\n"
            ));
        }
        if self.timers != Settings::default() {
            let t = &self.timers;
            text.push_str(&format!(
                "\n[timers]\nheartbeat_ms = {}\nprimary_timeout_ms = {}\nview_change_timeout_ms = {}\nresend_ms = {}\nrecovery_retry_ms = {}\n",
                t.heartbeat.as_millis(),
                t.primary_timeout.as_millis(),
                t.view_change_timeout.as_millis(),
                t.resend.as_millis(),
                t.recovery_retry.as_millis()
            ));
        }
        text
    }
}

/// How long each of the core's timers runs. The core decides when a timer
/// starts and stops; these are the runtime's choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// An idle primary sends Commit this often.
    pub heartbeat: Duration,
    /// A backup that hears nothing from its primary for this long starts a
    /// view change.
    pub primary_timeout: Duration,
    /// A view change that takes longer moves on to the next view.
    pub view_change_timeout: Duration,
    /// Unconfirmed messages are resent this often.
    pub resend: Duration,
    /// A recovering replica asks again this often.
    pub recovery_retry: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat: Duration::from_millis(20),
            primary_timeout: Duration::from_millis(150),
            view_change_timeout: Duration::from_millis(300),
            // attempts_max (3) resends within the primary timeout: a dead
            // peer is counted disconnected before the timeouts fire.
            resend: Duration::from_millis(40),
            recovery_retry: Duration::from_millis(200),
        }
    }
}

impl FileTimers {
    fn resolve(self) -> Result<Settings, ConfigFileError> {
        let defaults = Settings::default();
        let pick = |name: &str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(0) => Err(ConfigFileError::BadTimer(format!(
                "{name} must be at least 1"
            ))),
            Some(ms) if ms > TIMER_MAX_MS => Err(ConfigFileError::BadTimer(format!(
                "{name} = {ms} is more than an hour"
            ))),
            Some(ms) => Ok(Duration::from_millis(ms)),
        };
        let settings = Settings {
            heartbeat: pick("heartbeat_ms", self.heartbeat_ms, defaults.heartbeat)?,
            primary_timeout: pick(
                "primary_timeout_ms",
                self.primary_timeout_ms,
                defaults.primary_timeout,
            )?,
            view_change_timeout: pick(
                "view_change_timeout_ms",
                self.view_change_timeout_ms,
                defaults.view_change_timeout,
            )?,
            resend: pick("resend_ms", self.resend_ms, defaults.resend)?,
            recovery_retry: pick(
                "recovery_retry_ms",
                self.recovery_retry_ms,
                defaults.recovery_retry,
            )?,
        };
        // A backup must hear a heartbeat before it gives up on its primary.
        if settings.heartbeat >= settings.primary_timeout {
            return Err(ConfigFileError::BadTimer(format!(
                "heartbeat_ms ({}) must be below primary_timeout_ms ({}): backups would start view changes against an idle, healthy primary",
                settings.heartbeat.as_millis(),
                settings.primary_timeout.as_millis()
            )));
        }
        // spec/protocol.md, "Timers": attempts_max Resend periods detect a
        // dead peer before the timeouts fire.
        let detect = settings.resend * u32::from(crate::core::ATTEMPTS_MAX_DEFAULT);
        for (name, timeout) in [
            ("primary_timeout_ms", settings.primary_timeout),
            ("view_change_timeout_ms", settings.view_change_timeout),
        ] {
            if detect >= timeout {
                return Err(ConfigFileError::BadTimer(format!(
                    "{} resends of resend_ms ({}) take {} ms, not below {name} ({}): a dead peer must be detected before the timeout fires",
                    crate::core::ATTEMPTS_MAX_DEFAULT,
                    settings.resend.as_millis(),
                    detect.as_millis(),
                    timeout.as_millis()
                )));
            }
        }
        Ok(settings)
    }
}

impl Settings {
    /// How long `timer` runs.
    pub fn duration(&self, timer: Timer) -> Duration {
        match timer {
            Timer::Heartbeat => self.heartbeat,
            Timer::PrimaryTimeout => self.primary_timeout,
            Timer::ViewChangeTimeout => self.view_change_timeout,
            Timer::Resend => self.resend,
            Timer::RecoveryRetry => self.recovery_retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"
cluster_id = 7

[[replica]]
id = 0
address = "127.0.0.1:7000"

[[replica]]
id = 1
address = "127.0.0.1:7001"

[[replica]]
id = 2
address = "127.0.0.1:7002"
"#;

    #[test]
    fn a_three_replica_file_parses_and_round_trips() {
        let config = ClusterConfig::parse(THREE).unwrap();
        assert_eq!(config.cluster_id, 7);
        assert_eq!(config.replica_count(), 3);
        assert_eq!(ClusterConfig::parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let even = THREE.replace("[[replica]]\nid = 2\naddress = \"127.0.0.1:7002\"\n", "");
        assert!(matches!(
            ClusterConfig::parse(&even),
            Err(ConfigFileError::EvenReplicaCount(2))
        ));
        let duplicate_id = THREE.replace("id = 2", "id = 1");
        assert!(matches!(
            ClusterConfig::parse(&duplicate_id),
            Err(ConfigFileError::DuplicateId(1))
        ));
        let duplicate_address = THREE.replace("7002", "7001");
        assert!(matches!(
            ClusterConfig::parse(&duplicate_address),
            Err(ConfigFileError::DuplicateAddress(_))
        ));
        let gap = THREE.replace("id = 2", "id = 3");
        assert!(matches!(
            ClusterConfig::parse(&gap),
            Err(ConfigFileError::MissingId(2))
        ));
        let bad = THREE.replace("127.0.0.1:7002", "localhost");
        assert!(matches!(
            ClusterConfig::parse(&bad),
            Err(ConfigFileError::BadAddress { id: 2, .. })
        ));
        assert!(matches!(
            ClusterConfig::parse("cluster_id = 1"),
            Err(ConfigFileError::NoReplicas)
        ));
        let unspecified = THREE.replace("127.0.0.1:7002", "0.0.0.0:7002");
        assert!(matches!(
            ClusterConfig::parse(&unspecified),
            Err(ConfigFileError::BadAddress { id: 2, .. })
        ));
        let port_zero = THREE.replace("127.0.0.1:7002", "127.0.0.1:0");
        assert!(matches!(
            ClusterConfig::parse(&port_zero),
            Err(ConfigFileError::BadAddress { id: 2, .. })
        ));
        assert!(matches!(
            ClusterConfig::parse("cluster = 1"),
            Err(ConfigFileError::Parse(_))
        ));
    }

    #[test]
    fn a_timers_table_sets_the_timers_it_names_and_round_trips() {
        let config = ClusterConfig::parse(&format!(
            "{THREE}\n[timers]\nresend_ms = 40\nprimary_timeout_ms = 300\n"
        ))
        .unwrap();
        assert_eq!(config.timers.resend, Duration::from_millis(40));
        assert_eq!(config.timers.primary_timeout, Duration::from_millis(300));
        assert_eq!(config.timers.heartbeat, Settings::default().heartbeat);
        assert_eq!(ClusterConfig::parse(&config.to_toml()).unwrap(), config);
        assert_eq!(
            ClusterConfig::parse(THREE).unwrap().timers,
            Settings::default()
        );
    }

    #[test]
    fn a_client_table_max_is_read_and_round_trips_and_zero_is_refused() {
        let config = ClusterConfig::parse(&format!("client_table_max = 64\n{THREE}")).unwrap();
        assert_eq!(config.client_table_max, 64);
        assert_eq!(config.core_config(0).unwrap().client_table_max(), 64);
        assert_eq!(ClusterConfig::parse(&config.to_toml()).unwrap(), config);
        assert_eq!(
            ClusterConfig::parse(THREE).unwrap().client_table_max,
            CLIENT_TABLE_MAX_DEFAULT
        );
        assert!(ClusterConfig::parse(&format!("client_table_max = 0\n{THREE}")).is_err());
    }

    #[test]
    fn a_checkpoint_interval_is_read_and_round_trips() {
        let config = ClusterConfig::parse(&format!("checkpoint_interval = 500\n{THREE}")).unwrap();
        assert_eq!(config.checkpoint_interval, 500);
        assert_eq!(config.core_config(0).unwrap().checkpoint_interval(), 500);
        assert_eq!(ClusterConfig::parse(&config.to_toml()).unwrap(), config);
        assert!(ClusterConfig::parse(&format!("checkpoint_interval = 0\n{THREE}")).is_err());
    }

    #[test]
    fn a_relative_key_file_is_resolved_against_the_configuration_files_directory() {
        let dir = std::env::temp_dir().join(format!("vr-config-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.toml");
        std::fs::write(&path, format!("key_file = \"keys/cluster.key\"\n{THREE}")).unwrap();
        let config = ClusterConfig::load(&path).unwrap();
        assert_eq!(config.key_file, Some(dir.join("keys/cluster.key")));
        assert_eq!(ClusterConfig::parse(&config.to_toml()).unwrap(), config);
        std::fs::write(&path, format!("key_file = \"/etc/vr.key\"\n{THREE}")).unwrap();
        let config = ClusterConfig::load(&path).unwrap();
        assert_eq!(config.key_file, Some(PathBuf::from("/etc/vr.key")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_timers_are_refused_with_a_reason() {
        for (table, expected) in [
            ("resend_ms = 0", "resend_ms must be at least 1"),
            ("heartbeat_ms = 99999999", "more than an hour"),
            ("heartbeat_ms = 200", "must be below primary_timeout_ms"),
            (
                "resend_ms = 50",
                "3 resends of resend_ms (50) take 150 ms, not below primary_timeout_ms (150)",
            ),
            (
                "resend_ms = 110\nprimary_timeout_ms = 400",
                "not below view_change_timeout_ms (300)",
            ),
        ] {
            let text = format!("{THREE}\n[timers]\n{table}\n");
            let error = ClusterConfig::parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{table}: {error}");
        }
        assert!(matches!(
            ClusterConfig::parse(&format!("{THREE}\n[timers]\nresend = 40\n")),
            Err(ConfigFileError::Parse(_))
        ));
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_example_configuration_in_the_repository_is_valid() {
        let text = include_str!("../../../examples/cluster.toml");
        let config = super::ClusterConfig::parse(text).unwrap();
        assert_eq!(config.replica_count(), 3);
    }
}
