//! `envc verify`.

use std::sync::Arc;

use super::VerifyArgs;
use crate::progress::Reporter;
use crate::registry::ImageRef;
use crate::sign::PublicKey;
use crate::Result;

pub async fn run(args: VerifyArgs, _reporter: Arc<dyn Reporter>) -> Result<()> {
    let image = ImageRef::parse(&args.reference)?;
    let key = PublicKey::read(&args.key)?;
    let registry = args.registry.client();
    let verified = crate::sign::verify_image(&registry, &image, &key, args.attestations).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verified).expect("json serializes")
        );
    } else {
        println!(
            "verified {}: {} signature(s) by key {}",
            verified.reference, verified.signatures, verified.key
        );
        for attestation in &verified.attestations {
            println!("  {}", attestation.summary);
        }
    }
    Ok(())
}
