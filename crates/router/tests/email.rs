//! Email against a local SMTP relay that speaks the real protocol: a greeting, EHLO offering
//! STARTTLS (and AUTH only after it), the TLS handshake with a certificate from a test CA,
//! AUTH PLAIN, the envelope and DATA with dot-stuffing; it can answer DATA with a transient
//! 451 or a permanent 554.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use earshot_core::config::{DeliveryConfig, EmailConfig, ReceiverConfig, RouterConfig};
use earshot_core::model::{now_micros, Alert, DeliveryStatus, EnrichedMention};
use earshot_core::telemetry::Metrics;
use earshot_router::Deliverer;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn email_goes_over_starttls_with_auth_and_a_451_is_retried_with_the_same_message_id() {
    let relay = Relay::start(vec![451, 250]).await;
    let dir = temp_dir("email-ok");
    let password_file = dir.join("smtp-password");
    std::fs::write(&password_file, "s3cret-pass\n").unwrap();
    let deliverer = deliverer(relay.receiver(&dir, Some(password_file)), 3);
    let (mut alert, enriched) = sample("mail-1");
    alert.review_required = true;
    alert.review_topics = vec!["legal".into()];

    let delivery = deliverer
        .deliver(&alert, &enriched, "care-mail")
        .await
        .unwrap();

    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    assert_eq!(delivery.channel, "email");
    assert_eq!(delivery.attempts, 2);
    let sessions = relay.sessions();
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    for session in &sessions {
        assert!(session.tls, "mail sent before STARTTLS: {session:#?}");
        assert_eq!(
            session.auth.as_deref(),
            Some("\0earshot\0s3cret-pass"),
            "AUTH PLAIN with the password from the file"
        );
        assert_eq!(session.mail_from, "<alerts@earshot.example>");
        assert_eq!(
            session.rcpt_to,
            ["<care@acme.example>", "<pr@acme.example>"]
        );
    }
    let message_id = |data: &str| {
        data.lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .map(str::to_owned)
    };
    let first = message_id(&sessions[0].data).expect("a Message-ID");
    assert_eq!(Some(first.clone()), message_id(&sessions[1].data));
    assert!(
        first.contains(&format!("<{}@earshot>", delivery.id)),
        "{first}"
    );
    let data = &sessions[1].data;
    assert!(data.contains("Subject: [REVIEW] Earshot: acme"), "{data}");
    assert!(
        data.contains("No public reply before review (sensitive: legal)"),
        "{data}"
    );
    // A line of the post that is a lone dot survives the SMTP transfer (dot-stuffing).
    assert!(data.contains("crushed\r\n.\r\nagain"), "{data}");
    assert!(data.contains("https://x.example/status/mail-1"), "{data}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_permanent_smtp_refusal_is_not_retried() {
    let relay = Relay::start(vec![554]).await;
    let dir = temp_dir("email-refused");
    let deliverer = deliverer(relay.receiver(&dir, None), 3);
    let (alert, enriched) = sample("mail-2");
    let delivery = deliverer
        .deliver(&alert, &enriched, "care-mail")
        .await
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 1);
    assert!(
        delivery.last_error.as_deref().unwrap().contains("554"),
        "{delivery:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_relay_with_an_untrusted_certificate_gets_no_mail() {
    let relay = Relay::start(vec![250]).await;
    let dir = temp_dir("email-untrusted");
    let mut receiver = relay.receiver(&dir, None);
    // Trust only the public roots: the relay's test CA is not among them.
    receiver.email.as_mut().unwrap().ca_file = None;
    let deliverer = deliverer(receiver, 1);
    let (alert, enriched) = sample("mail-3");
    let delivery = deliverer
        .deliver(&alert, &enriched, "care-mail")
        .await
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Failed, "{delivery:?}");
    let error = delivery.last_error.unwrap();
    assert!(error.contains("UnknownIssuer"), "{error}");
    let sessions = relay.sessions();
    assert!(!sessions.is_empty(), "the relay was reached");
    assert!(
        sessions.iter().all(|s| !s.tls && s.mail_from.is_empty()),
        "{sessions:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the relay saw in one connection.
#[derive(Debug, Clone, Default)]
struct Session {
    tls: bool,
    auth: Option<String>,
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

struct Relay {
    addr: SocketAddr,
    ca_pem: String,
    sessions: Arc<Mutex<Vec<Session>>>,
}

impl Relay {
    /// A relay answering the n-th DATA with `data_replies[n]` (the last one after that).
    async fn start(data_replies: Vec<u16>) -> Relay {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Earshot test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let seen = sessions.clone();
        let replies = Arc::new(Mutex::new((data_replies, 0usize)));
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (acceptor, seen, replies) = (acceptor.clone(), seen.clone(), replies.clone());
                tokio::spawn(async move {
                    let index = {
                        let mut all = seen.lock().unwrap();
                        all.push(Session::default());
                        all.len() - 1
                    };
                    serve(socket, acceptor, seen, index, replies).await;
                });
            }
        });
        Relay {
            addr,
            ca_pem: ca_cert.pem(),
            sessions,
        }
    }

    fn receiver(
        &self,
        dir: &std::path::Path,
        password_file: Option<std::path::PathBuf>,
    ) -> ReceiverConfig {
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &self.ca_pem).unwrap();
        ReceiverConfig {
            name: "care-mail".into(),
            email: Some(EmailConfig {
                host: "localhost".into(),
                port: self.addr.port(),
                from: "Earshot <alerts@earshot.example>".into(),
                to: vec!["care@acme.example".into(), "PR <pr@acme.example>".into()],
                username: password_file.as_ref().map(|_| "earshot".to_owned()),
                password_env: None,
                password_file,
                ca_file: Some(ca_file),
                allow_private: true,
            }),
            ..ReceiverConfig::default()
        }
    }

    fn sessions(&self) -> Vec<Session> {
        self.sessions.lock().unwrap().clone()
    }
}

/// One SMTP connection: plain text until STARTTLS, then the same dialogue over TLS.
async fn serve(
    socket: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Arc<Mutex<Vec<Session>>>,
    index: usize,
    replies: Arc<Mutex<(Vec<u16>, usize)>>,
) {
    let mut plain = BufReader::new(socket);
    let _ = plain
        .get_mut()
        .write_all(b"220 localhost ESMTP test relay\r\n")
        .await;
    if !dialogue(&mut plain, false, &seen, index, &replies).await {
        return;
    }
    let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
        return;
    };
    seen.lock().unwrap()[index].tls = true;
    let mut secure = BufReader::new(tls);
    dialogue(&mut secure, true, &seen, index, &replies).await;
}

/// Answers commands; returns true when the client asked for STARTTLS.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    tls: bool,
    seen: &Arc<Mutex<Vec<Session>>>,
    index: usize,
    replies: &Arc<Mutex<(Vec<u16>, usize)>>,
) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            if tls {
                "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
            } else {
                "250-localhost\r\n250-STARTTLS\r\n250 8BITMIME\r\n".into()
            }
        } else if upper == "STARTTLS" && !tls {
            let _ = stream
                .get_mut()
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await;
            return true;
        } else if upper.starts_with("AUTH PLAIN") && tls {
            let encoded = command["AUTH PLAIN".len()..].trim();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            seen.lock().unwrap()[index].auth = Some(String::from_utf8_lossy(&decoded).into_owned());
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            if !tls {
                "530 5.7.0 Must issue a STARTTLS command first\r\n".into()
            } else {
                let from = command["MAIL FROM:".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                seen.lock().unwrap()[index].mail_from = from.to_owned();
                "250 2.1.0 OK\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let to = command["RCPT TO:".len()..].trim().to_owned();
            seen.lock().unwrap()[index].rcpt_to.push(to);
            "250 2.1.5 OK\r\n".into()
        } else if upper == "DATA" {
            let _ = stream
                .get_mut()
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await;
            let mut data = String::new();
            loop {
                line.clear();
                if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return false;
                }
                if line == ".\r\n" {
                    break;
                }
                // Undo the sender's dot-stuffing.
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            seen.lock().unwrap()[index].data = data;
            let code = {
                let mut replies = replies.lock().unwrap();
                let (codes, n) = &mut *replies;
                let code = codes[(*n).min(codes.len() - 1)];
                *n += 1;
                code
            };
            match code {
                250 => "250 2.0.0 OK queued\r\n".into(),
                451 => "451 4.3.0 Temporary failure, try again later\r\n".into(),
                _ => "554 5.7.1 Message rejected\r\n".into(),
            }
        } else if upper == "QUIT" {
            let _ = stream.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
            return false;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return false;
        }
    }
}

fn deliverer(receiver: ReceiverConfig, max_attempts: u32) -> Deliverer {
    let config = RouterConfig {
        receivers: vec![receiver],
        delivery: DeliveryConfig {
            max_attempts,
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            request_timeout_ms: 5_000,
            concurrency: 4,
            ..DeliveryConfig::default()
        },
        ..RouterConfig::default()
    };
    Deliverer::new(&config, Metrics::default(), CancellationToken::new()).expect("a deliverer")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "earshot-{name}-{}-{}",
        std::process::id(),
        now_micros()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample(native_id: &str) -> (Alert, EnrichedMention) {
    let (alert, mut enriched) = common::acme_alert(
        native_id,
        "my Acme order arrived crushed\n.\nagain",
        "acme-reach",
    );
    enriched.matches = vec![];
    (alert, enriched)
}
