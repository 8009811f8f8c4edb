//! `earshot`: real-time social listening with response routing.
//!
//! `earshot run` runs the whole pipeline in one process (no Kafka, no PostgreSQL needed);
//! `earshot collector|enricher|router|sink` run one service against Kafka, as Kubernetes runs
//! them; `earshot check-config` validates a configuration; `earshot test-routes` checks
//! routing fixtures; `earshot sentiment` scores lines of text with VADER; `earshot
//! test-queries` checks watchlist queries against fixture posts and `earshot enrich` runs the
//! enricher offline on NDJSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use earshot::embedded::{self, Input};
use earshot_core::config::{ConfigSources, PostgresConfig, Role, EXIT_CONFIG};
use earshot_core::Config;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "earshot",
    version,
    about = "Real-time social listening with response routing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run all four stages in one process over an in-memory bus. Without --config, replays the
    /// bundled sample of three fictional brands and prints the alerts it routes.
    Run {
        /// YAML or TOML configuration; defaults to the built-in demo configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also write to this PostgreSQL database (e.g. postgres://user@host/db).
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Replay this NDJSON file instead of the bundled sample.
        #[arg(long, value_name = "FILE")]
        replay: Option<PathBuf>,
    },
    /// Run the collector against Kafka.
    Collector(ServiceArgs),
    /// Run the enricher against Kafka.
    Enricher(ServiceArgs),
    /// Run the router against Kafka.
    Router(ServiceArgs),
    /// Run the sink against Kafka (with --migrate: apply PostgreSQL migrations and exit).
    Sink {
        #[command(flatten)]
        args: ServiceArgs,
        /// Apply pending PostgreSQL migrations to sink.postgres, check the schema and exit.
        #[arg(long)]
        migrate: bool,
    },
    /// Summarize what the sink stored: tables on the terminal and a self-contained HTML report
    /// with charts (volume and sentiment per watchlist with spikes, share of voice, alerts and
    /// response times per team).
    Report {
        /// Read the sink's PostgreSQL database (e.g. postgres://user@host/db).
        #[arg(
            long,
            value_name = "URL",
            required_unless_present = "parquet",
            conflicts_with = "parquet"
        )]
        database_url: Option<String>,
        /// Read the sink's Parquet files under this directory.
        #[arg(long, value_name = "DIR")]
        parquet: Option<PathBuf>,
        /// Where to write the HTML report.
        #[arg(
            long,
            short,
            value_name = "FILE",
            default_value = "earshot-report.html"
        )]
        out: PathBuf,
    },
    /// Run the configured collector sources and print what they yield as NDJSON on standard
    /// output instead of publishing it (no Kafka needed; checkpoints last for the run).
    Collect {
        /// YAML or TOML configuration file; EARSHOT_<SECTION>__<KEY> variables override it.
        #[arg(long, short, env = "EARSHOT_CONFIG")]
        config: Option<PathBuf>,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long, value_name = "SECONDS")]
        seconds: Option<u64>,
    },
    /// Validate a configuration: print every problem (exit 64) or the effective configuration.
    CheckConfig {
        /// YAML or TOML configuration file.
        file: PathBuf,
        /// Also check the secrets (environment variables and files) this process reads at
        /// start, in this environment, as it does before starting anything.
        #[arg(long, value_enum, value_name = "PROCESS")]
        secrets_of: Option<Process>,
    },
    /// Check routing fixtures: route each mention of FILE through the routing tree, print the
    /// matched route paths and receivers, and exit 1 when any case reaches other receivers
    /// than it expects (64 on an invalid configuration, 65 on an unreadable fixture file).
    TestRoutes {
        /// YAML or TOML fixtures (see `earshot_router::test_routes`).
        file: PathBuf,
        /// The configuration to test; by default the fixture file's `config`, else the
        /// built-in demo configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Score lines of text with VADER (the scores of vaderSentiment 3.3.2): reads
    /// `id<TAB>text` lines on stdin (a line without a tab is a text whose id is its line
    /// number), writes `id<TAB>neg<TAB>neu<TAB>pos<TAB>compound` on stdout. A line that cannot
    /// be scored is reported on stderr and skipped; the exit code is then 65.
    Sentiment,
    /// Check watchlist queries against a fixture file of posts and the watchlists each must
    /// and must not match; prints every failure with the clause trace and exits 1 on failure,
    /// 64 when the fixture or its queries are invalid.
    TestQueries {
        /// YAML fixture: `watchlists` (unless --config gives them) and `cases`.
        file: PathBuf,
        /// Take the watchlists from this configuration's `enricher.watchlists`.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Enrich `Mention` NDJSON on stdin into `EnrichedMention` NDJSON on stdout (one line per
    /// matched watchlist), with the enricher service's code and the configuration's
    /// watchlists. A line that is not a Mention is reported on stderr; the exit code is then 65.
    Enrich {
        /// YAML or TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// A process whose secrets `check-config --secrets-of` checks.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Process {
    Collector,
    Enricher,
    Router,
    Sink,
    /// `earshot run`.
    Run,
}

impl From<Process> for Role {
    fn from(process: Process) -> Role {
        match process {
            Process::Collector => Role::Collector,
            Process::Enricher => Role::Enricher,
            Process::Router => Role::Router,
            Process::Sink => Role::Sink,
            Process::Run => Role::Embedded,
        }
    }
}

/// Exit code of `earshot sentiment` when some lines were rejected (EX_DATAERR).
const EXIT_DATA: u8 = 65;

#[derive(clap::Args)]
struct ServiceArgs {
    /// YAML or TOML configuration file; EARSHOT_<SECTION>__<KEY> variables override it.
    #[arg(long, short, env = "EARSHOT_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async_main(cli))
}

fn load(defaults_yaml: Option<&str>, file: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    load_for(defaults_yaml, file, None, |_| {})
}

/// [`load`] with the command line's overrides (`adjust`) applied, and the secrets `role` reads
/// at start checked too: a process refuses to start, exit 64, with every problem of its
/// configuration and every missing secret listed at once.
fn load_for(
    defaults_yaml: Option<&str>,
    file: Option<&std::path::Path>,
    role: Option<Role>,
    adjust: impl FnOnce(&mut Config),
) -> Result<Config, ExitCode> {
    Config::load_adjusted(
        ConfigSources {
            defaults_yaml,
            file,
            environment: true,
        },
        role,
        adjust,
    )
    .map_err(|errors| {
        eprint!("{errors}");
        ExitCode::from(EXIT_CONFIG as u8)
    })
}

async fn async_main(cli: Cli) -> ExitCode {
    let shutdown = CancellationToken::new();
    let result = match cli.command {
        // Synchronous and CPU-bound: nothing else runs on the runtime meanwhile.
        Command::Sentiment => return sentiment(),
        Command::TestQueries { file, config } => return test_queries(&file, config.as_deref()),
        Command::Enrich { config } => {
            return match load(None, config.as_deref()) {
                Ok(config) => enrich(&config),
                Err(code) => code,
            }
        }
        Command::CheckConfig { file, secrets_of } => {
            return match load_for(None, Some(&file), secrets_of.map(Role::from), |_| {}) {
                Ok(config) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&config).expect("config serializes")
                    );
                    eprintln!("{}: valid", file.display());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        Command::Report {
            database_url,
            parquet,
            out,
        } => report(database_url, parquet, out).await,
        Command::TestRoutes { file, config } => return test_routes(&file, config.as_deref()),
        Command::Run {
            config,
            postgres,
            replay,
        } => {
            let defaults = config.is_none().then_some(embedded::DEMO_CONFIG);
            let overrides = |config: &mut Config| {
                if let Some(url) = postgres {
                    config.sink.postgres = Some(PostgresConfig {
                        url: Some(url),
                        url_env: None,
                        ..PostgresConfig::default()
                    });
                }
                if let Some(path) = replay {
                    config.collector.replay = Some(earshot_core::config::ReplayConfig {
                        path,
                        rate_per_sec: 0,
                    });
                }
            };
            let config =
                match load_for(defaults, config.as_deref(), Some(Role::Embedded), overrides) {
                    Ok(config) => config,
                    Err(code) => return code,
                };
            earshot_core::telemetry::init_tracing(&config.telemetry);
            earshot_core::shutdown::cancel_on_signals(shutdown.clone());
            let configured = &config.collector;
            let input = if configured.http.is_some()
                || configured.replay.is_some()
                || !earshot_collector::sources::instances(configured).is_empty()
            {
                Input::Configured
            } else {
                Input::Text(embedded::SAMPLE)
            };
            let parquet_dir = config.sink.parquet.as_ref().map(|p| p.dir.clone());
            let outcome = embedded::run(config, input, shutdown, |addr| {
                if let Some(addr) = addr {
                    eprintln!(
                        "earshot: ingest endpoint http://{addr}/v1/mentions (Ctrl-C to stop)"
                    );
                }
            })
            .await;
            outcome.map(|summary| {
                println!("{summary}");
                if let Some(dir) = parquet_dir {
                    println!(
                        "Parquet files under {0} (summary: earshot report --parquet {0})",
                        dir.display()
                    );
                }
            })
        }
        Command::Collect { config, seconds } => {
            let config = match load(None, config.as_deref()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            earshot_core::telemetry::init_tracing(&config.telemetry);
            earshot_core::shutdown::cancel_on_signals(shutdown.clone());
            if let Some(seconds) = seconds {
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
                    shutdown.cancel();
                });
            }
            earshot_collector::collect(
                &config.collector,
                earshot_core::telemetry::Metrics::default(),
                shutdown,
            )
            .await
            .map_err(anyhow::Error::from)
        }
        Command::Collector(args) => {
            service(args, Role::Collector, shutdown, |c, s| {
                Box::pin(async move { Ok(earshot_collector::run(c, s).await?) })
            })
            .await
        }
        Command::Enricher(args) => {
            // The watchlists reload from this file on SIGHUP or when it changes.
            let file = args.config.clone();
            service(args, Role::Enricher, shutdown, |c, s| {
                Box::pin(async move { Ok(earshot_enricher::run_reloading(c, file, s).await?) })
            })
            .await
        }
        Command::Router(args) => {
            service(args, Role::Router, shutdown, |c, s| {
                Box::pin(async move { Ok(earshot_router::run(c, s).await?) })
            })
            .await
        }
        Command::Sink {
            args,
            migrate: true,
        } => {
            service(args, Role::Sink, shutdown, |c, _| {
                Box::pin(async move {
                    let applied = earshot_sink::migrate(&c).await?;
                    println!("migrations applied: {applied:?} (schema checked)");
                    Ok(())
                })
            })
            .await
        }
        Command::Sink { args, .. } => {
            service(args, Role::Sink, shutdown, |c, s| {
                Box::pin(async move { Ok(earshot_sink::run(c, s).await?) })
            })
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(code) = error.downcast_ref::<ExitCodeError>() {
                return ExitCode::from(code.0);
            }
            eprintln!("earshot: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `earshot test-routes`: the logic is in the router crate.
fn test_routes(file: &std::path::Path, config: Option<&std::path::Path>) -> ExitCode {
    use earshot_router::test_routes::{run, TestRoutesError};
    match run(file, config, embedded::DEMO_CONFIG) {
        Ok(report) => {
            print!("{}", report.text);
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(TestRoutesError::Fixtures(error)) => {
            eprintln!("earshot test-routes: {error}");
            ExitCode::from(EXIT_DATA)
        }
        Err(TestRoutesError::Config(errors)) => {
            eprint!("{errors}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
        Err(error) => {
            eprintln!("earshot test-routes: {error}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}

/// `earshot sentiment`, synchronous: stdin to stdout, one line at a time.
fn sentiment() -> ExitCode {
    let analyzer = earshot_sentiment::SentimentAnalyzer::default();
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    match earshot::sentiment::run(&analyzer, stdin.lock(), stdout.lock(), stderr.lock()) {
        Ok(summary) if summary.rejected == 0 => ExitCode::SUCCESS,
        Ok(summary) => {
            eprintln!(
                "earshot sentiment: {} lines scored, {} rejected",
                summary.scored, summary.rejected
            );
            ExitCode::from(EXIT_DATA)
        }
        // A closed stdout (`earshot sentiment | head`) ends the run quietly.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("earshot sentiment: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn report(
    database_url: Option<String>,
    parquet: Option<PathBuf>,
    out: PathBuf,
) -> anyhow::Result<()> {
    use earshot_sink::report;
    let dataset = match (database_url, parquet) {
        (Some(url), _) => {
            let config: tokio_postgres::Config = url
                .parse()
                .map_err(|e| anyhow::anyhow!("--database-url: not a PostgreSQL URL: {e}"))?;
            report::load_postgres(&config).await?
        }
        (None, Some(dir)) => report::load_parquet(&dir)?,
        (None, None) => anyhow::bail!("give --database-url or --parquet"),
    };
    let figures = report::analyze(&dataset);
    print!("{}", figures.terminal());
    let html = figures.html(chrono::Utc::now())?;
    std::fs::write(&out, html).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    println!("\nHTML report: {}", out.display());
    Ok(())
}

/// `earshot test-queries`: the fixture's cases against its (or the config's) watchlists.
fn test_queries(file: &std::path::Path, config: Option<&std::path::Path>) -> ExitCode {
    use earshot_enricher::offline;
    let fixture = match offline::load_fixture(file) {
        Ok(fixture) => fixture,
        Err(error) => {
            eprintln!("earshot test-queries: {error}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let enricher = match config {
        Some(path) => match load(None, Some(path)) {
            Ok(config) => config.enricher,
            Err(code) => return code,
        },
        None => earshot_core::config::EnricherConfig {
            watchlists: fixture.watchlists,
            ..Default::default()
        },
    };
    let problems = offline::fixture_problems(&enricher.watchlists, &fixture.cases);
    if !problems.is_empty() {
        eprintln!(
            "earshot test-queries: {}",
            offline::FixtureError::Invalid(problems)
        );
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    match offline::test_queries(&enricher, &fixture.cases, std::io::stdout().lock()) {
        Ok(summary) => {
            println!("{} cases, {} failures", summary.cases, summary.failures);
            if summary.failures == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("earshot test-queries: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `earshot enrich`: Mention NDJSON to EnrichedMention NDJSON.
fn enrich(config: &Config) -> ExitCode {
    let enricher = earshot_enricher::Enricher::new(&config.enricher);
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    match earshot_enricher::offline::enrich_ndjson(
        &enricher,
        stdin.lock(),
        stdout.lock(),
        stderr.lock(),
    ) {
        Ok(summary) if summary.rejected == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_DATA),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("earshot enrich: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
struct ExitCodeError(u8);

type ServiceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>;

/// Loads the configuration and checks the secrets `role` reads before anything starts:
/// invalid configuration or a missing secret exits 64 with every problem listed.
async fn service(
    args: ServiceArgs,
    role: Role,
    shutdown: CancellationToken,
    run: impl FnOnce(Config, CancellationToken) -> ServiceFuture,
) -> anyhow::Result<()> {
    let config = load_for(None, args.config.as_deref(), Some(role), |_| {})
        .map_err(|_| ExitCodeError(EXIT_CONFIG as u8))?;
    earshot_core::telemetry::init_tracing(&config.telemetry);
    earshot_core::shutdown::cancel_on_signals(shutdown.clone());
    run(config, shutdown).await
}
