//! Unit tests of settings resolution.

use super::tracking::tracking_credentials_with;
use super::*;

use crate::settings::env_table as with;

#[test]
fn code_wins_over_env_which_wins_over_default() -> Result<()> {
    let env = with(&[("RANKLOG_PROJECT", "fromenv"), ("RANKLOG_MODE", "disabled")]);
    let r = Settings::new().project("fromcode").resolve_with(&env)?;
    assert_eq!(r.project, "fromcode");
    assert_eq!(r.mode, Mode::Disabled);
    let r = Settings::new().resolve_with(&with(&[]))?;
    assert_eq!(r.project, "uncategorized");
    assert_eq!(r.mode, Mode::Offline);
    assert_eq!(r.root, PathBuf::from("ranklog"));
    Ok(())
}

#[test]
fn tracking_server_makes_online_the_default() -> Result<()> {
    let r = Settings::new().resolve_with(&with(&[("MLFLOW_TRACKING_URI", "http://h:5000")]))?;
    assert_eq!(r.mode, Mode::Online);
    Ok(())
}

#[test]
fn ranklog_credentials_win_over_mlflow_ones() {
    let c = tracking_credentials_with(&with(&[
        ("MLFLOW_TRACKING_USERNAME", "m"),
        ("RANKLOG_TRACKING_USERNAME", "r"),
        ("MLFLOW_TRACKING_PASSWORD", "secret-pw"),
    ]));
    assert_eq!(c.username.as_deref(), Some("r"));
    assert_eq!(c.password.as_deref(), Some("secret-pw"));
    assert!(!format!("{c:?}").contains("secret-pw"));
}

#[test]
fn bad_env_values_name_the_variable() {
    let e = Settings::new().resolve_with(&with(&[("RANKLOG_MODE", "fast")]));
    assert!(matches!(e, Err(Error::InvalidSetting { ref name, .. }) if name == "RANKLOG_MODE"));
    let e = Settings::new().resolve_with(&with(&[("RANKLOG_SILENT", "maybe")]));
    assert!(matches!(e, Err(Error::InvalidSetting { ref name, .. }) if name == "RANKLOG_SILENT"));
}

#[test]
fn rank_group_and_strategy_come_from_the_launcher() -> Result<()> {
    let torchrun = [
        ("RANK", "2"),
        ("WORLD_SIZE", "4"),
        ("LOCAL_RANK", "2"),
        ("LOCAL_WORLD_SIZE", "4"),
        ("TORCHELASTIC_RUN_ID", "job9"),
        ("RANKLOG_STRATEGY", "rank-zero-only"),
    ];
    let r = Settings::new().resolve_with(&with(&torchrun))?;
    assert_eq!(r.rank.map(|k| k.rank), Some(2));
    assert_eq!(r.group.as_deref(), Some("job9"));
    assert_eq!(r.strategy, Strategy::RankZeroOnly);
    let r = Settings::new()
        .strategy(Strategy::Grouped)
        .group("mine")
        .resolve_with(&with(&torchrun))?;
    assert_eq!(r.strategy, Strategy::Grouped);
    assert_eq!(r.group.as_deref(), Some("mine"));
    let e = Settings::new().resolve_with(&with(&[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
    ]));
    assert!(matches!(e, Err(Error::GroupRequired { world_size: 2, .. })));
    let disabled = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("RANKLOG_MODE", "disabled"),
    ];
    assert_eq!(Settings::new().resolve_with(&with(&disabled))?.group, None);
    let e = Settings::new().resolve_with(&with(&[("RANKLOG_STRATEGY", "all")]));
    assert!(matches!(e, Err(Error::InvalidSetting { ref name, .. }) if name == "RANKLOG_STRATEGY"));
    Ok(())
}

#[test]
fn export_wandb_comes_from_code_or_env() -> Result<()> {
    let env = with(&[("RANKLOG_EXPORT_WANDB", "/tmp/fromenv")]);
    let r = Settings::new().resolve_with(&env)?;
    assert_eq!(r.export_wandb, Some(PathBuf::from("/tmp/fromenv")));
    let r = Settings::new().export_wandb("out").resolve_with(&env)?;
    assert_eq!(r.export_wandb, Some(PathBuf::from("out")));
    assert_eq!(Settings::new().resolve_with(&with(&[]))?.export_wandb, None);
    Ok(())
}

#[test]
fn config_must_be_an_object() {
    let e = Settings::new()
        .config(serde_json::json!([1, 2]))
        .resolve_with(&with(&[]));
    assert!(matches!(
        e,
        Err(Error::ConfigNotAnObject { found: "an array" })
    ));
}

#[test]
fn queue_stall_timeout_comes_from_code_env_or_default() -> Result<()> {
    let job = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("RANKLOG_STRATEGY", "single-writer"),
        ("RANKLOG_GROUP", "g"),
    ];
    let stall = |s: Settings, extra: &[(&str, &str)]| -> Result<Duration> {
        let mut vars = job.to_vec();
        vars.extend_from_slice(extra);
        let r = s.resolve_with(&with(&vars))?;
        Ok(r.queue.map(|q| q.stall_timeout).unwrap_or_default())
    };
    assert_eq!(stall(Settings::new(), &[])?, Duration::from_secs(60));
    let env = [("RANKLOG_QUEUE_STALL_TIMEOUT_S", "7")];
    assert_eq!(stall(Settings::new(), &env)?, Duration::from_secs(7));
    let code = Settings::new().queue_stall_timeout(Duration::from_secs(2));
    assert_eq!(stall(code, &env)?, Duration::from_secs(2));
    let zero = [("RANKLOG_QUEUE_STALL_TIMEOUT_S", "0")];
    assert!(matches!(
        stall(Settings::new(), &zero),
        Err(Error::InvalidSetting { .. })
    ));
    Ok(())
}

#[test]
fn upload_timeouts_and_backoff_come_from_code_or_env() -> Result<()> {
    let r = Settings::new().resolve_with(&with(&[]))?;
    assert_eq!(r.upload_tuning, UploadTuning::default());
    let env = with(&[
        ("RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS", "1500"),
        ("RANKLOG_UPLOAD_BACKOFF_MIN_MS", "20"),
        ("RANKLOG_UPLOAD_BACKOFF_MAX_MS", "400"),
    ]);
    let r = Settings::new().resolve_with(&env)?;
    assert_eq!(r.upload_tuning.request_timeout, Duration::from_millis(1500));
    assert_eq!(r.upload_tuning.backoff_min, Duration::from_millis(20));
    assert_eq!(r.upload_tuning.backoff_max, Duration::from_millis(400));
    let r = Settings::new()
        .upload_request_timeout(Duration::from_secs(2))
        .upload_backoff(Duration::from_secs(1), Duration::from_millis(10))
        .resolve_with(&env)?;
    assert_eq!(r.upload_tuning.request_timeout, Duration::from_secs(2));
    // The longest wait is never below the first.
    assert_eq!(r.upload_tuning.backoff_max, Duration::from_secs(1));
    for bad in ["0", "soon"] {
        let e = Settings::new().resolve_with(&with(&[("RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS", bad)]));
        assert!(
            matches!(e, Err(Error::InvalidSetting { ref name, .. }) if name == "RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS"),
            "{bad}"
        );
    }
    Ok(())
}
