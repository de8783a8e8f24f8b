//! `envc push`.

use std::sync::Arc;

use super::PushArgs;
use crate::progress::{Event, Reporter};
use crate::store::Store;
use crate::{Error, Result};

pub async fn run(args: PushArgs, reporter: Arc<dyn Reporter>) -> Result<()> {
    let store = Store::open(&args.store.clone().unwrap_or_else(Store::default_root))?;
    let source = crate::build::with_default_tag(&args.source);
    let Some(manifest) = store.content().resolve_tag(&source)? else {
        return Err(Error::usage(
            format!("no image tagged `{source}` in the local store"),
            Some("build it first with `envc build --tag NAME`".to_string()),
        ));
    };
    let digest = manifest.digest().to_string();
    let destination = args.destination.as_deref().unwrap_or(&source);
    let registry = Arc::new(args.registry.client());
    let pushed = crate::build::push_image(&store, &registry, &digest, destination).await?;
    reporter.report(Event::Info {
        message: format!("pushed {pushed}"),
    });
    if args.json {
        let value = serde_json::json!({ "digest": digest, "pushed": [pushed] });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("json serializes")
        );
    } else {
        println!("{digest}");
        println!("{pushed}");
    }
    Ok(())
}
