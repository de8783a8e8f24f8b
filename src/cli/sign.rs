//! `envc sign`.

use std::sync::Arc;

use super::password::EnvOrPrompt;
use super::SignArgs;
use crate::progress::{Event, Reporter};
use crate::registry::ImageRef;
use crate::sign::KeyPair;
use crate::Result;

pub async fn run(args: SignArgs, reporter: Arc<dyn Reporter>) -> Result<()> {
    let image = ImageRef::parse(&args.reference)?;
    if image.digest.is_none() {
        return Err(crate::sign::Error::NotPinned {
            reference: args.reference.clone(),
        }
        .into());
    }
    let key = KeyPair::read(&args.key, &EnvOrPrompt)?;
    let registry = args.registry.client();

    // The digest must name a manifest in the registry, because a signature of nothing is useless.
    registry.fetch_manifest(&image).await?;
    let attached = crate::sign::attach_signature(&registry, &image, &key).await?;
    reporter.report(Event::Info {
        message: format!(
            "signed {image} with key {} ({} signature(s) now)",
            key.public_key().fingerprint(),
            attached.layers
        ),
    });
    if args.json {
        let value = serde_json::json!({
            "digest": image.digest,
            "signature": attached.reference,
            "signatures": attached.layers,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("json serializes")
        );
    } else {
        println!("{}", attached.reference);
    }
    Ok(())
}
