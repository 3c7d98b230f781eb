//! Settings: defaults, parsing and the errors that name their variable.
use super::*;

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

fn parse(env: &[(&str, &str)]) -> Result<Settings, String> {
    use clap::Parser;
    let mut args = vec!["rei-bot".to_owned()];
    // Flags carry the same value parsers as the variables; `--flag=value` keeps
    // values such as `-5` from reading as flags.
    for (k, v) in env {
        args.push(format!("--{}={v}", k.to_lowercase().replace('_', "-")));
    }
    let settings = Cli::try_parse_from(args)
        .map_err(|e| e.to_string())?
        .settings;
    settings.require_bot().map_err(|e| e.to_string())?;
    Ok(settings)
}

const MIN: [(&str, &str); 2] = [("BOT_TOKEN", "123:abc"), ("ADMIN_IDS", "1,2")];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    MIN.iter().chain(extra).copied().collect()
}

/// [edge] Printed settings (`Debug`, which a log line or a panic may show) never
/// carry a password, in the URL's user part or in its query.
#[test]
fn printed_settings_show_no_url_password() {
    let c = parse(&with(&[
        (
            "DATABASE_URL",
            "postgres://rei:hunter2@db/rei?sslmode=verify-full&password=hunter3",
        ),
        ("REDIS_URL", "rediss://:hunter4@cache:6380/0"),
    ]))
    .unwrap();
    let shown = format!("{c:?}");
    for secret in ["hunter2", "hunter3", "hunter4", "123:abc"] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
    assert!(shown.contains("postgres://rei:***@db/rei"), "{shown}");
    let url = c.database_url.as_ref().unwrap();
    assert!(
        url.expose().contains("hunter2"),
        "the driver gets the real URL"
    );
}

#[test]
fn defaults_follow_the_contract() {
    let c = parse(&MIN).unwrap();
    assert_eq!(
        c.admin_ids,
        vec![UserId::new(1).unwrap(), UserId::new(2).unwrap()]
    );
    assert_eq!(c.database_path, "rei_bot.db");
    assert_eq!(c.image_generation_price, "50".parse().unwrap());
    assert_eq!(c.topup_amounts.len(), 4);
    assert_eq!(c.telegram_mode, TelegramMode::Polling);
    assert_eq!(c.http_addr.port(), 8080);
    assert!(
        c.yookassa_webhook_allowed_ips
            .contains("185.71.76.1".parse().unwrap())
    );
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.validate().unwrap(), PriceList::seed_defaults());
    assert_eq!(c.disabled_features().len(), 3);
}

#[test]
fn malformed_values_name_their_variable() {
    for (var, bad) in [
        ("ADMIN_IDS", "abc"),
        ("IMAGE_GENERATION_PRICE", "-5"),
        ("IMAGE_EDIT_PRICE", "1.005"),
        ("VIDEO_5SEC_PRICE", "0"),
        ("VIDEO_10SEC_MULTIPLIER", "0"),
        ("MAX_ACTIVE_JOBS_PER_USER", "many"),
        ("TOPUP_AMOUNTS", "100,abc"),
        ("HTTP_ADDR", "nowhere"),
        ("PUBLIC_URL", "http://bot.example.com"),
        ("TELEGRAM_MODE", "carrier-pigeon"),
        ("YOOKASSA_RECEIPT_VAT_CODE", "9"),
        ("YOOKASSA_WEBHOOK_ALLOWED_IPS", "185.71.76.0/27,nonsense"),
        ("TRUSTED_PROXIES", "10.0.0.0/99"),
        ("PAYMENT_POLL_INTERVAL_SECS", "0"),
        ("LOG_FORMAT", "xml"),
        ("HTTP_MAX_CONNECTIONS", "0"),
        ("ASSET_SIGNING_KEY", "too-short"),
        ("ASSET_SIGNING_KEY_PREVIOUS", "short"),
    ] {
        let args = [
            MIN[0],
            ("ADMIN_IDS", if var == "ADMIN_IDS" { bad } else { "1" }),
            (var, bad),
        ];
        let args: Vec<_> = if var == "ADMIN_IDS" {
            args[..2].to_vec()
        } else {
            args.to_vec()
        };
        let err = parse(&args).expect_err(var);
        assert!(
            err.contains(var),
            "the error for {var}={bad} must name {var}: {err}"
        );
        assert!(
            err.contains(bad.split(',').next_back().unwrap_or(bad)),
            "and show the bad value: {err}"
        );
    }
}

#[test]
fn required_variables_are_required() {
    assert!(
        parse(&[("BOT_TOKEN", "x")])
            .unwrap_err()
            .contains("ADMIN_IDS")
    );
    assert!(
        parse(&[("ADMIN_IDS", "1")])
            .unwrap_err()
            .contains("BOT_TOKEN")
    );
}

#[test]
fn cross_field_rules_are_checked() {
    let c = parse(&with(&[("TELEGRAM_MODE", "webhook")])).unwrap();
    assert_eq!(c.validate(), Err(SettingsError::WebhookWithoutPublicUrl));
    let c = parse(&with(&[
        ("TELEGRAM_MODE", "webhook"),
        ("PUBLIC_URL", "https://bot.example.com"),
    ]))
    .unwrap();
    assert!(c.validate().is_ok());
    let c = parse(&with(&[("KLING_ACCESS_KEY", "ak")])).unwrap();
    assert_eq!(c.validate(), Err(SettingsError::HalfKlingKeys));
    let c = parse(&with(&[("KLING_MODE", "ultra")])).unwrap();
    assert!(matches!(c.validate(), Err(SettingsError::KlingMode(_))));
    let c = parse(&with(&[("KLING_MODELS", "no-label")])).unwrap();
    assert!(matches!(c.validate(), Err(SettingsError::KlingModels(_))));
}

#[test]
fn secrets_never_print() {
    let c = parse(&with(&[
        ("YOOKASSA_SECRET_KEY", "live_supersecret"),
        ("YOOKASSA_SHOP_ID", "1"),
    ]))
    .unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("supersecret") && !shown.contains("123:abc"),
        "{shown}"
    );
}

/// [growth] The sandbox runs with only BOT_TOKEN, refuses real YooKassa keys beside it
/// and a value that is not 0 or 1, naming the variable.
#[test]
fn the_sandbox_needs_only_a_token_and_refuses_real_payment_keys() {
    let c = parse(&[("BOT_TOKEN", "123:abc"), ("SANDBOX", "1")]).unwrap();
    assert!(c.sandbox);
    assert!(c.validate().is_ok());
    assert!(
        c.disabled_features().is_empty(),
        "nothing is off in the sandbox"
    );
    assert!(!parse(&MIN).unwrap().sandbox, "off by default");
    let err = parse(&[("BOT_TOKEN", "123:abc")]).unwrap_err();
    assert!(
        err.contains("ADMIN_IDS"),
        "outside the sandbox admins are needed: {err}"
    );

    let c = parse(&with(&[
        ("SANDBOX", "1"),
        ("YOOKASSA_SHOP_ID", "123"),
        ("YOOKASSA_SECRET_KEY", "live_x"),
    ]))
    .unwrap();
    let err = c.validate().unwrap_err();
    assert_eq!(err, SettingsError::SandboxWithRealPayments);
    assert!(err.to_string().contains("SANDBOX=1"), "{err}");

    let err = parse(&with(&[("SANDBOX", "yes")])).unwrap_err();
    assert!(
        err.contains("SANDBOX") && err.contains("not 0 or 1"),
        "{err}"
    );
}

/// [admin-web] `ADMIN_WEB` is off by default and takes 0 or 1, named when wrong.
#[test]
fn the_web_admin_is_off_by_default_and_switched_with_0_or_1() {
    assert!(!parse(&MIN).unwrap().admin_web);
    assert!(parse(&with(&[("ADMIN_WEB", "1")])).unwrap().admin_web);
    let err = parse(&with(&[("ADMIN_WEB", "on")])).unwrap_err();
    assert!(
        err.contains("ADMIN_WEB") && err.contains("not 0 or 1"),
        "{err}"
    );
}
