//! Kafka over TLS with SASL/SCRAM-SHA-512, against a real broker: a throwaway single-node
//! Kafka that `scripts/kafka` starts for this test on free ports, with a SASL_SSL listener
//! whose certificate a throwaway CA signed. The clients are configured as a deployment
//! configures them: `kafka.properties` for the protocol, mechanism, user name and CA file,
//! `kafka.secret_properties_file` for the password.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use earshot_core::bus::{OutRecord, Publisher, Subscription};
use earshot_core::config::KafkaConfig;
use earshot_core::kafka::{ensure_topics, KafkaPublisher, KafkaSubscription};
use earshot_core::telemetry::{Health, Metrics};

const USER: &str = "earshot-tls-test";
const PASSWORD: &str = "tls-test-password-0123";

/// A broker of this test's own, stopped when the test ends, even when it fails.
struct TlsBroker {
    run_dir: PathBuf,
    ports: [u16; 3],
    tls_bootstrap: String,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        let ports = [free_port(), free_port(), free_port()];
        let run_dir = std::env::temp_dir().join(format!(
            "earshot-kafka-tls-{}-{}",
            std::process::id(),
            ports[0]
        ));
        let broker = TlsBroker {
            tls_bootstrap: format!("127.0.0.1:{}", ports[2]),
            run_dir,
            ports,
        };
        let output = broker.script("start").output().expect("scripts/kafka runs");
        assert!(
            output.status.success(),
            "scripts/kafka start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        broker
    }

    fn script(&self, action: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka");
        let mut command = Command::new(script);
        command
            .arg(action)
            // The shared broker's address must not short-circuit the script.
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .env("EARSHOT_KAFKA_PORT", self.ports[0].to_string())
            .env("EARSHOT_KAFKA_CONTROLLER_PORT", self.ports[1].to_string())
            .env("EARSHOT_KAFKA_TLS_PORT", self.ports[2].to_string())
            .env("EARSHOT_KAFKA_DIR", &self.run_dir)
            .env("EARSHOT_KAFKA_SCRAM_USER", USER)
            .env("EARSHOT_KAFKA_SCRAM_PASSWORD", PASSWORD);
        command
    }

    fn ca_file(&self) -> PathBuf {
        self.run_dir.join("tls/ca.crt")
    }

    /// Client settings for the SASL_SSL listener, the password read from `password_file`.
    fn client_config(&self, password_file: &Path, ca_file: Option<&Path>) -> KafkaConfig {
        let mut properties = BTreeMap::from([
            ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
            ("sasl.username".to_owned(), USER.to_owned()),
        ]);
        if let Some(ca) = ca_file {
            properties.insert("ssl.ca.location".into(), ca.display().to_string());
        }
        KafkaConfig {
            bootstrap_servers: self.tls_bootstrap.clone(),
            topic_partitions: 1,
            message_timeout_ms: 5_000,
            properties,
            secret_properties_file: BTreeMap::from([(
                "sasl.password".to_owned(),
                password_file.to_path_buf(),
            )]),
            ..KafkaConfig::default()
        }
    }

    fn write_password(&self, name: &str, password: &str) -> PathBuf {
        let path = self.run_dir.join(name);
        std::fs::write(&path, format!("{password}\n")).unwrap();
        path
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.script("stop").output();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn record(topic: &str, payload: &'static [u8]) -> OutRecord {
    OutRecord {
        topic: Arc::from(topic),
        key: Some(Bytes::from_static(b"key")),
        payload: Bytes::from_static(payload),
        headers: Vec::new(),
    }
}

/// One broker for the three cases: starting a broker costs seconds, a case costs little.
#[tokio::test(flavor = "multi_thread")]
async fn records_go_through_a_tls_listener_with_scram_and_bad_credentials_or_ca_do_not() {
    let broker = TlsBroker::start();
    let health = Health::new(Duration::from_secs(30));
    let topic = format!("tls-{}", std::process::id());

    // The right password and CA: topics are created, a record is acknowledged and read back,
    // all over TLS with SCRAM.
    let password = broker.write_password("password", PASSWORD);
    let config = broker.client_config(&password, Some(&broker.ca_file()));
    ensure_topics(&config, &[&topic])
        .await
        .expect("the admin client creates the topic over SASL_SSL");
    let publisher = KafkaPublisher::new(&config, "tls-test", health.ready_flag("producer"))
        .expect("a SASL_SSL producer");
    publisher
        .publish(record(&topic, b"over tls"))
        .await
        .await
        .expect("the broker acknowledges over SASL_SSL");
    let mut subscription = KafkaSubscription::new(
        &config,
        &format!("{topic}-group"),
        &[&topic],
        Metrics::default(),
        health.ready_flag("joined"),
        health.ready_flag("consumer broker"),
    )
    .expect("a SASL_SSL consumer");
    let read = tokio::time::timeout(Duration::from_secs(30), subscription.recv())
        .await
        .expect("a record within 30 s")
        .expect("the subscription is open")
        .expect("the record is read over SASL_SSL");
    assert_eq!(read.payload.as_deref(), Some(&b"over tls"[..]));

    // A wrong password: the broker refuses the login, so nothing is acknowledged.
    let wrong = broker.write_password("wrong-password", "not-the-password");
    let config = broker.client_config(&wrong, Some(&broker.ca_file()));
    let publisher =
        KafkaPublisher::new(&config, "tls-test-wrong-password", health.ready_flag("p2"))
            .expect("the client is created; the login fails when it connects");
    let refused = publisher.publish(record(&topic, b"refused")).await.await;
    assert!(refused.is_err(), "a wrong SCRAM password was accepted");

    // The broker's certificate checked against the system's CAs instead of the cluster's:
    // the handshake fails, so nothing is acknowledged.
    let config = broker.client_config(&password, None);
    let publisher = KafkaPublisher::new(&config, "tls-test-untrusted", health.ready_flag("p3"))
        .expect("the client is created; the handshake fails when it connects");
    let untrusted = publisher.publish(record(&topic, b"untrusted")).await.await;
    assert!(
        untrusted.is_err(),
        "a broker certificate from an unknown CA was trusted"
    );
}
