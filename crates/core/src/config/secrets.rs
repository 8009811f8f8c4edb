//! The secrets a process reads at start (environment variables and files named by the
//! configuration), checked before it starts anything: a service whose ingest token, receiver
//! key or database URL is missing exits 64 with every such problem listed, instead of creating
//! topics, binding ports and joining its group only to fail on the first one it reads.

use std::path::Path;

use super::{Config, ConfigErrors, ReceiverConfig};

/// The process a configuration is started as: each reads only its own secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Collector,
    Enricher,
    Router,
    Sink,
    /// `earshot run`: every stage in one process over the in-memory bus (no Kafka).
    Embedded,
}

/// Bearer tokens (the ingest endpoint's, the router API's) must be at least this long.
pub const MIN_TOKEN_CHARS: usize = 16;

impl Config {
    /// Every secret `role` reads at start that is missing, unreadable or empty (and every
    /// bearer token shorter than [`MIN_TOKEN_CHARS`]), each under its key path.
    pub fn secret_problems(&self, role: Role) -> ConfigErrors {
        let mut found = ConfigErrors::default();
        let errors = &mut found;
        if role != Role::Embedded {
            for (property, variable) in &self.kafka.secret_properties_env {
                check(
                    errors,
                    format!("kafka.secret_properties_env.{property}"),
                    Some(variable),
                    None,
                );
            }
            for (property, path) in &self.kafka.secret_properties_file {
                check(
                    errors,
                    format!("kafka.secret_properties_file.{property}"),
                    None,
                    Some(path),
                );
            }
        }
        if matches!(role, Role::Collector | Role::Embedded) {
            let collector = &self.collector;
            if let Some(http) = &collector.http {
                let (env, file) = http.token_source();
                check_token(errors, "collector.http", env, file);
            }
            let sources = &collector.sources;
            for (i, x) in sources.x.iter().enumerate() {
                check(
                    errors,
                    format!("collector.sources.x[{i}].bearer_token_env"),
                    Some(&x.bearer_token_env),
                    None,
                );
            }
            for (i, reddit) in sources.reddit.iter().enumerate() {
                if let Some(oauth) = &reddit.oauth {
                    let path = format!("collector.sources.reddit[{i}].oauth");
                    check(
                        errors,
                        format!("{path}.client_id_env"),
                        Some(&oauth.client_id_env),
                        None,
                    );
                    check(
                        errors,
                        format!("{path}.client_secret_env"),
                        Some(&oauth.client_secret_env),
                        None,
                    );
                }
            }
            for (i, mastodon) in sources.mastodon.iter().enumerate() {
                if let Some(variable) = &mastodon.access_token_env {
                    check(
                        errors,
                        format!("collector.sources.mastodon[{i}].access_token_env"),
                        Some(variable),
                        None,
                    );
                }
            }
            for (i, discourse) in sources.discourse.iter().enumerate() {
                let path = format!("collector.sources.discourse[{i}]");
                if let Some(variable) = &discourse.api_key_env {
                    check(errors, format!("{path}.api_key_env"), Some(variable), None);
                }
                if let Some(variable) = &discourse.api_username_env {
                    check(
                        errors,
                        format!("{path}.api_username_env"),
                        Some(variable),
                        None,
                    );
                }
            }
        }
        if matches!(role, Role::Router | Role::Embedded) {
            for (i, receiver) in self.router.receivers.iter().enumerate() {
                receiver_secrets(errors, receiver, &format!("router.receivers[{i}]"));
            }
            if let Some(api) = &self.router.api {
                check_token(
                    errors,
                    "router.api",
                    api.token_env.as_deref(),
                    api.token_file.as_deref(),
                );
            }
        }
        if matches!(role, Role::Sink | Role::Embedded) {
            if let Some(postgres) = &self.sink.postgres {
                check_url_env(errors, "sink.postgres", &postgres.url, &postgres.url_env);
            }
        }
        found
    }
}

fn receiver_secrets(errors: &mut ConfigErrors, receiver: &ReceiverConfig, path: &str) {
    if let Some(webhook) = &receiver.webhook {
        let path = format!("{path}.webhook");
        check_url_env(errors, &path, &webhook.url, &webhook.url_env);
        check_env_or_file(
            errors,
            &path,
            "secret",
            webhook.secret_env.as_deref(),
            webhook.secret_file.as_deref(),
        );
    }
    if let Some(slack) = &receiver.slack {
        check_url_env(errors, &format!("{path}.slack"), &slack.url, &slack.url_env);
    }
    if let Some(teams) = &receiver.teams {
        check_url_env(errors, &format!("{path}.teams"), &teams.url, &teams.url_env);
    }
    if let Some(pagerduty) = &receiver.pagerduty {
        check_env_or_file(
            errors,
            &format!("{path}.pagerduty"),
            "routing_key",
            pagerduty.routing_key_env.as_deref(),
            pagerduty.routing_key_file.as_deref(),
        );
    }
    if let Some(email) = &receiver.email {
        check_env_or_file(
            errors,
            &format!("{path}.email"),
            "password",
            email.password_env.as_deref(),
            email.password_file.as_deref(),
        );
        if let Some(ca) = &email.ca_file {
            check(errors, format!("{path}.email.ca_file"), None, Some(ca));
        }
    }
}

/// Reports the secret at `path` unless it reads.
fn check(errors: &mut ConfigErrors, path: String, env: Option<&str>, file: Option<&Path>) {
    if let Err(problem) = read_secret(env, file) {
        errors.push(path, problem);
    }
}

/// `url_env` of the section at `path` when no literal `url` is given.
fn check_url_env(
    errors: &mut ConfigErrors,
    path: &str,
    url: &Option<String>,
    url_env: &Option<String>,
) {
    if let (None, Some(variable)) = (url, url_env) {
        check(errors, format!("{path}.url_env"), Some(variable), None);
    }
}

/// The secret `<name>_env` (read first) or `<name>_file` of the section at `path`, under
/// the key that is read; nothing when neither is set.
fn check_env_or_file(
    errors: &mut ConfigErrors,
    path: &str,
    name: &str,
    env: Option<&str>,
    file: Option<&Path>,
) {
    if let Some(key) = env_or_file_key(path, name, env, file) {
        check(errors, key, env, file);
    }
}

/// A bearer token `token_env` (read first) or `token_file` of the section at `path`.
fn check_token(errors: &mut ConfigErrors, path: &str, env: Option<&str>, file: Option<&Path>) {
    // Validation already requires one of the two.
    if let Some(key) = env_or_file_key(path, "token", env, file) {
        if let Err(problem) = read_token(env, file) {
            errors.push(key, problem);
        }
    }
}

/// `<path>.<name>_env` when `env` is set (it is read first), else `<path>.<name>_file`.
fn env_or_file_key(
    path: &str,
    name: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Option<String> {
    match (env, file) {
        (Some(_), _) => Some(format!("{path}.{name}_env")),
        (None, Some(_)) => Some(format!("{path}.{name}_file")),
        (None, None) => None,
    }
}

/// A bearer token (the ingest endpoint's, the router API's): [`read_secret`], at least
/// [`MIN_TOKEN_CHARS`] characters long.
pub fn read_token(env: Option<&str>, file: Option<&Path>) -> Result<String, String> {
    let token = read_secret(env, file)?;
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "the bearer token must be at least {MIN_TOKEN_CHARS} characters"
        ));
    }
    Ok(token)
}

/// A secret from the environment variable `env`, else the file `file` (surrounding whitespace
/// dropped); an error names the variable or the file and what is wrong with it.
pub fn read_secret(env: Option<&str>, file: Option<&Path>) -> Result<String, String> {
    let value = match (env, file) {
        (Some(variable), _) => match std::env::var(variable) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("environment variable {variable} is not set"))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("environment variable {variable} is not UTF-8"))
            }
        },
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, None) => return Err("names no environment variable or file".into()),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(match (env, file) {
            (Some(variable), _) => format!("environment variable {variable} is empty"),
            (None, Some(path)) => format!("{} is empty", path.display()),
            (None, None) => unreachable!("returned above"),
        });
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSources, HttpIngestConfig, PostgresConfig};

    fn config(yaml: &str) -> Config {
        Config::load(ConfigSources {
            defaults_yaml: Some(yaml),
            file: None,
            environment: false,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn each_role_checks_only_its_own_secrets_and_reports_all_of_them() {
        let dir = std::env::temp_dir().join(format!("earshot-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short-token");
        std::fs::write(&short, "too-short\n").unwrap();
        let missing = dir.join("does-not-exist");
        let unset = "EARSHOT_TEST_SECRET_THAT_IS_NEVER_SET";
        let yaml = format!(
            r#"
kafka:
  properties:
    security.protocol: SASL_SSL
    sasl.mechanism: SCRAM-SHA-512
    sasl.username: earshot
  secret_properties_env:
    sasl.password: {unset}
collector:
  http:
    token_file: "{short}"
  sources:
    x:
      - name: x
        bearer_token_env: {unset}
        rules: [{{value: acme}}]
router:
  receivers:
    - name: hook
      webhook:
        url: "https://hooks.example.com/earshot"
        secret_file: "{missing}"
    - name: pager
      pagerduty:
        routing_key_env: {unset}
sink:
  postgres:
    url_env: {unset}
"#,
            short = short.display(),
            missing = missing.display(),
        );
        let config = config(&yaml);
        let problems = |role| config.secret_problems(role).problems;

        let collector = problems(Role::Collector);
        assert_eq!(collector.len(), 3, "{collector:#?}");
        assert!(collector[0].starts_with(&format!(
            "kafka.secret_properties_env.sasl.password: environment variable {unset} is not set"
        )));
        assert_eq!(
            collector[1],
            "collector.http.token_file: the bearer token must be at least 16 characters"
        );
        assert!(collector[2].starts_with("collector.sources.x[0].bearer_token_env:"));

        let router = problems(Role::Router);
        assert_eq!(router.len(), 3, "{router:#?}");
        assert!(
            router[1].starts_with("router.receivers[0].webhook.secret_file: cannot read"),
            "{router:#?}"
        );
        assert!(router[2].starts_with("router.receivers[1].pagerduty.routing_key_env:"));

        let sink = problems(Role::Sink);
        assert_eq!(sink.len(), 2, "{sink:#?}");
        assert!(sink[1].starts_with("sink.postgres.url_env:"));

        // The enricher reads no secret but Kafka's; the embedded mode no Kafka secret.
        assert_eq!(problems(Role::Enricher).len(), 1);
        assert_eq!(
            problems(Role::Embedded).len(),
            5,
            "{:#?}",
            problems(Role::Embedded)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn present_secrets_and_literal_urls_pass() {
        let dir = std::env::temp_dir().join(format!("earshot-secrets-ok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "a-token-of-twenty-chars\n").unwrap();
        let mut config = Config::default();
        config.collector.http = Some(HttpIngestConfig {
            token_env: None,
            token_file: Some(token.clone()),
            ..HttpIngestConfig::default()
        });
        config.sink.postgres = Some(PostgresConfig {
            url: Some("postgres://localhost/earshot".into()),
            ..PostgresConfig::default()
        });
        for role in [
            Role::Collector,
            Role::Enricher,
            Role::Router,
            Role::Sink,
            Role::Embedded,
        ] {
            let problems = config.secret_problems(role).problems;
            assert!(problems.is_empty(), "{role:?}: {problems:#?}");
        }
        assert_eq!(
            read_secret(None, Some(&token)).unwrap(),
            "a-token-of-twenty-chars"
        );
        std::fs::write(&token, " \n").unwrap();
        assert_eq!(
            read_secret(None, Some(&token)).unwrap_err(),
            format!("{} is empty", token.display())
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
