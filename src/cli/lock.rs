//! `envc lock`.

use std::sync::Arc;

use super::LockArgs;
use crate::build::LockMode;
use crate::progress::{Event, Reporter};
use crate::{Error, Result};

pub async fn run(args: LockArgs, reporter: Arc<dyn Reporter>) -> Result<()> {
    if !args.path.is_dir() {
        return Err(Error::usage(
            format!("project folder `{}` does not exist", args.path.display()),
            Some("pass the folder that holds `.devcontainer/`".to_string()),
        ));
    }
    let workspace = std::path::absolute(&args.path).unwrap_or_else(|_| args.path.clone());
    let file = crate::config::find_config(&workspace, args.config.as_deref())?;
    let config = crate::config::load(&file, &|name| std::env::var(name).ok())?;
    let store = args
        .store
        .clone()
        .unwrap_or_else(crate::store::Store::default_root);
    let registry = args.registry.client();
    let mode = if args.frozen {
        LockMode::Frozen
    } else {
        LockMode::Refresh
    };
    crate::build::resolve_locked(&config, &registry, &store.join("features"), mode).await?;

    let path = crate::feature::lockfile::path_for(&config.file);
    let message = match (config.features.is_empty(), args.frozen) {
        (true, _) => "no Features, so no lockfile".to_string(),
        (false, true) => format!("`{}` is up to date", path.display()),
        (false, false) => format!("wrote `{}`", path.display()),
    };
    reporter.report(Event::Info { message });
    Ok(())
}
