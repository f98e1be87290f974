//! `smolchat`: parse the config, bind, run, map errors to an exit code.

use std::io::Write;
use std::process::ExitCode;

use smolchat::accounts::rules::Access;
use smolchat::app::App;
use smolchat::config::{self, Command};
use smolchat::server;
use smolchat::transform::{ConfigError as TransformError, Pipeline};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if let Some(name) = args
        .peek()
        .and_then(|a| a.to_str())
        .filter(|a| smolchat::cli::SUBCOMMANDS.contains(a))
        .map(str::to_string)
    {
        let rest: Vec<_> = args.skip(1).collect();
        let mut out = std::io::stdout().lock();
        return match smolchat::cli::run(&name, rest, |k| std::env::var(k).ok(), &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("smolchat {name}: {}", e.message());
                ExitCode::from(e.code())
            }
        };
    }
    let mut config = match config::parse(std::env::args_os().skip(1), |k| std::env::var(k).ok()) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version(v)) => {
            println!("{v}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("smolchat: {e}");
            return ExitCode::from(2);
        }
    };
    let pipeline = match pipeline(&mut config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("smolchat: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    match server::raise_fd_limit() {
        Some(n) if (n as usize) < config.max_connections + 16 => log::warn!(
            "open-file limit is {n}, below --max-connections {}; raise it (ulimit -n, or LimitNOFILE= in the unit)",
            config.max_connections
        ),
        Some(n) => log::debug!("open-file limit {n}"),
        None => {}
    }
    // HTTPS: the certificate and key are checked before anything else
    // starts, so a bad pair is one line and exit 1.
    let mut https = server::Https::default();
    if let Some(files) = &config.tls {
        match smolchat::tls::Certs::load(files.clone()) {
            Ok(c) => https.certs = Some(c),
            Err(e) => {
                eprintln!("smolchat: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(addr) = config.redirect_http {
        match server::bind(addr) {
            Ok(l) => https.redirect = Some(l),
            Err(e) => {
                eprintln!("smolchat: cannot listen on {addr} (--redirect-http): {e}");
                return ExitCode::from(1);
            }
        }
    }
    let scheme = if https.certs.is_some() {
        "https"
    } else {
        "http"
    };
    let listener = match server::bind(config.addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("smolchat: cannot listen on {}: {e}", config.addr);
            return ExitCode::from(1);
        }
    };
    let bound = listener.local_addr().unwrap_or(config.addr);
    let addr = bound.to_string();
    let local = config.addr.ip().is_loopback();
    // Listening on every address: the URLs a phone can open instead.
    if bound.ip().is_unspecified() {
        config.lan_urls = smolchat::lan::urls(scheme, bound, &smolchat::lan::addresses());
    }
    let qr = config
        .qr
        .then(|| qr_target(scheme, bound, &config.lan_urls));
    let lan_urls = config.lan_urls.clone();
    let app = match App::open(config, pipeline) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("smolchat: {e}");
            return ExitCode::from(1);
        }
    };
    // Anyone who can reach a non-loopback address may use the server as
    // --default-access allows: say so, on the ready line and in the log.
    let open = (!local && app.config.default_access != Access::Deny).then(|| {
        format!(
            " (open to everyone who can reach it: --default-access {})",
            app.config.default_access
        )
    });
    if let Some(note) = &open {
        log::warn!("listening on {addr}{note}; see docs/access.md to require accounts");
    }
    let result = server::run(listener, app.clone(), https, || {
        // The first line is the ready line, whatever follows: tests and
        // scripts read the address from it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "smolchat listening on {scheme}://{addr}{}",
            open.as_deref().unwrap_or("")
        );
        for url in &lan_urls {
            let _ = writeln!(out, "  on this network: {url}");
        }
        match &qr {
            Some(Some((url, code))) => {
                let _ = write!(out, "{code}");
                let _ = writeln!(out, "  scan to open {url}");
            }
            Some(None) => {
                eprintln!("smolchat: --qr: no address on a network to show (listening on {addr})")
            }
            None => {}
        }
        let _ = out.flush();
    });
    // Commit whatever posts are still queued before exiting.
    app.close_store();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smolchat: {e}");
            ExitCode::from(1)
        }
    }
}

/// The URL `--qr` shows and its code: the first network URL, else the
/// listening address itself if a phone could reach it.
fn qr_target(
    scheme: &str,
    bound: std::net::SocketAddr,
    lan: &[String],
) -> Option<(String, String)> {
    let url = match lan.first() {
        Some(url) => url.clone(),
        None if !bound.ip().is_loopback() && !bound.ip().is_unspecified() => {
            format!("{scheme}://{bound}")
        }
        None => return None,
    };
    let code = smolchat::invite::terminal(&url)?;
    Some((url, code))
}

/// Reads `--censor-words` and builds the transform pipeline.
fn pipeline(config: &mut config::Config) -> Result<Pipeline, String> {
    if let Some(path) = &config.censor_words_file {
        let words =
            std::fs::read_to_string(path).map_err(|e| format!("--censor-words {path}: {e}"))?;
        config.transforms.censor_words = Some(words);
    }
    Pipeline::from_config(&config.transforms).map_err(|e| match (&e, &config.censor_words_file) {
        (TransformError::CensorWord { .. } | TransformError::EmptyWordList, Some(path)) => {
            format!("--censor-words {path}: {e}")
        }
        _ => format!("invalid value for --transforms: {e}"),
    })
}
