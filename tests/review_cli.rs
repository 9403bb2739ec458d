//! The `landwatch review` subcommands through `cli_main` (argument parsing included), and the
//! database's schema versioning.

mod review_support;

use clap::Parser;
use landwatch_review::{cli_main, ReviewCmd, Store, PASSWORD_ENV};
use review_support::*;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: ReviewCmd,
}

fn run(args: &[&str]) -> Result<i32, landwatch_core::Error> {
    let cli = Cli::try_parse_from(std::iter::once("landwatch-review").chain(args.iter().copied()))
        .map_err(|e| landwatch_core::Error::Usage(e.to_string()))?;
    cli_main(cli.cmd)
}

/// One test touches the process environment, so everything env-related lives here.
#[test]
fn user_add_import_export_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let run1 = data.join("run1");
    write_run(&run1, &first_run_specs());
    let db = tmp.path().join("r.sqlite");
    let db_s = db.to_str().unwrap();

    std::env::remove_var(PASSWORD_ENV);
    let err = run(&["user", "add", "ann", "--role", "reviewer", "--db", db_s]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains(PASSWORD_ENV), "{err}");
    std::env::set_var(PASSWORD_ENV, "short");
    assert_eq!(
        run(&["user", "add", "ann", "--role", "reviewer", "--db", db_s])
            .unwrap_err()
            .exit_code(),
        2
    );
    std::env::set_var(PASSWORD_ENV, PASSWORD);
    assert_eq!(
        run(&["user", "add", "ann", "--role", "reviewer", "--db", db_s]).unwrap(),
        0
    );
    assert_eq!(
        run(&["user", "add", "ann", "--role", "admin", "--db", db_s])
            .unwrap_err()
            .exit_code(),
        2
    );
    std::env::remove_var(PASSWORD_ENV);
    assert!(run(&["user", "add", "x", "--role", "king", "--db", db_s]).is_err());
    let store = Store::open(&db).unwrap();
    let ann = landwatch_review::users::check_login(&store, "ann", PASSWORD).unwrap();
    assert!(ann.is_some(), "the password from the environment works");
    let stored: String = store
        .conn()
        .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
        .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains(PASSWORD));

    let data_s = data.to_str().unwrap();
    assert_eq!(
        run(&["import", run1.to_str().unwrap(), "--db", db_s, "--data", data_s]).unwrap(),
        0
    );
    let outside = tempfile::tempdir().unwrap();
    write_run(outside.path(), &first_run_specs());
    let err = run(&[
        "import",
        outside.path().to_str().unwrap(),
        "--db",
        db_s,
        "--data",
        data_s,
    ])
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);

    for (format, file) in [("geojson", "v.geojson"), ("csv", "v.csv")] {
        let out = tmp.path().join(file);
        assert_eq!(
            run(&[
                "export",
                "--db",
                db_s,
                "--format",
                format,
                "--out",
                out.to_str().unwrap()
            ])
            .unwrap(),
            0
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("P0003"), "{format} export lists the patches");
    }
    assert!(run(&["export", "--db", db_s, "--format", "pdf", "--out", "x"]).is_err());
}

#[test]
fn migrations_are_numbered_and_a_newer_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("r.sqlite");
    let store = Store::open(&db).unwrap();
    let v = store.schema_version().unwrap();
    assert!(v >= 1);
    let mode: String = store.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    // Reopening is a no-op.
    assert_eq!(Store::open(&db).unwrap().schema_version().unwrap(), v);
    // A database from a future landwatch is refused, not mangled.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let err = landwatch_core::Error::from(Store::open(&db).err().expect("newer schema refused"));
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("newer"), "{err}");
    // A file that is not a database is bad input.
    let junk = tmp.path().join("junk.sqlite");
    std::fs::write(&junk, b"this is not sqlite at all, just text").unwrap();
    let err = landwatch_core::Error::from(Store::open(&junk).err().expect("junk refused"));
    assert_eq!(err.exit_code(), 2, "{err}");
}

/// The `serve` arguments of `args` (after `serve --db d --data d`).
fn serve_args(args: &[&str]) -> Result<landwatch_review::ServeArgs, clap::Error> {
    let base = ["landwatch-review", "serve", "--db", "r.sqlite", "--data", "data"];
    let cli = Cli::try_parse_from(base.iter().chain(args.iter()).copied())?;
    match cli.cmd {
        ReviewCmd::Serve(a) => Ok(a),
        _ => unreachable!("parsed a serve command"),
    }
}

#[test]
fn serve_flags_set_the_abuse_limits_and_bad_values_are_refused() {
    use std::time::Duration;
    let d = serve_args(&[]).unwrap().options().unwrap();
    assert_eq!(d.login_limits.max_failures_per_account, 5);
    assert_eq!(d.login_limits.max_failures_per_address, 20);
    assert_eq!(d.login_limits.lockout, Duration::from_secs(60));
    assert_eq!(d.login_limits.lockout_max, Duration::from_secs(900));
    assert_eq!(d.header_read_timeout, Duration::from_secs(10));
    assert_eq!(d.request_timeout, Duration::from_secs(60));

    let o = serve_args(&[
        "--login-max-failures",
        "3",
        "--login-max-failures-per-address",
        "0",
        "--login-window",
        "120",
        "--login-lockout",
        "10",
        "--login-lockout-max",
        "40",
        "--header-read-timeout",
        "2",
        "--request-timeout",
        "30",
        "--allowed-host",
        "review-pc",
        "--allowed-host",
        "review-pc.lan:8080",
    ])
    .unwrap()
    .options()
    .unwrap();
    assert_eq!(o.login_limits.max_failures_per_account, 3);
    assert_eq!(o.login_limits.max_failures_per_address, 0);
    assert_eq!(o.login_limits.window, Duration::from_secs(120));
    assert_eq!(o.login_limits.lockout, Duration::from_secs(10));
    assert_eq!(o.login_limits.lockout_max, Duration::from_secs(40));
    assert_eq!(o.header_read_timeout, Duration::from_secs(2));
    assert_eq!(o.request_timeout, Duration::from_secs(30));
    assert_eq!(o.allowed_hosts, ["review-pc", "review-pc.lan:8080"]);

    for bad in [
        &["--header-read-timeout", "0"][..],
        &["--request-timeout", "-1"],
        &["--login-lockout", "soon"],
    ] {
        assert!(serve_args(bad).is_err(), "{bad:?} accepted");
    }

    // A public origin or allowed host the Host check could not use is bad input (exit 2).
    let tmp = tempfile::tempdir().unwrap();
    for bad in [
        &["--public-origin", "review.example.gov.cn"][..],
        &["--public-origin", "https://review.example.gov.cn/app"],
        &["--allowed-host", "http://review-pc/"],
    ] {
        let options = serve_args(bad).unwrap().options().unwrap();
        let store = Store::open(&tmp.path().join("r.sqlite")).unwrap();
        let err = landwatch_review::web::AppState::new(store, tmp.path(), options)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        let err = landwatch_core::Error::from(err);
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains(bad[0]), "{err}");
    }
}

#[test]
fn serve_flags_set_session_limits_and_the_argon2_cost() {
    use landwatch_review::users::{HashCost, SessionLimits};
    use std::time::Duration;
    let d = serve_args(&[]).unwrap().options().unwrap();
    assert_eq!(d.session_limits, SessionLimits::default());
    assert_eq!(d.session_limits.idle, Duration::from_secs(8 * 3600));
    assert_eq!(d.session_limits.max_lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(d.password_cost, HashCost::MINIMUM);

    let o = serve_args(&[
        "--session-idle-timeout",
        "1800",
        "--session-max-lifetime",
        "36000",
        "--argon2-memory-kib",
        "65536",
        "--argon2-iterations",
        "3",
        "--argon2-parallelism",
        "4",
    ])
    .unwrap()
    .options()
    .unwrap();
    assert_eq!(o.session_limits.idle, Duration::from_secs(1800));
    assert_eq!(o.session_limits.max_lifetime, Duration::from_secs(36000));
    assert_eq!(o.password_cost, HashCost::new(65536, 3, 4).unwrap());

    assert!(serve_args(&["--session-idle-timeout", "0"]).is_err());
    assert!(serve_args(&["--session-max-lifetime", "soon"]).is_err());
    for (bad, named) in [
        (&["--argon2-memory-kib", "4096"][..], "--argon2-memory-kib"),
        (&["--argon2-iterations", "1"], "--argon2-iterations"),
        (&["--argon2-parallelism", "1000"], "--argon2-parallelism"),
    ] {
        let err = serve_args(bad).unwrap().options().unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains(named), "{err}");
    }
}
