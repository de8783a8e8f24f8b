//! `envc keygen`.

use std::path::PathBuf;

use super::password::EnvOrPrompt;
use super::KeygenArgs;
use crate::sign::{keys, KeyPair, PasswordSource as _};
use crate::Result;

pub fn run(args: KeygenArgs) -> Result<()> {
    let private_path = PathBuf::from(format!("{}.key", args.output_key_prefix.display()));
    let password = EnvOrPrompt.password(&private_path, true)?;
    let key = KeyPair::generate();
    let (private, public) = keys::write_key_pair(&key, &args.output_key_prefix, &password)?;
    if args.json {
        let value = serde_json::json!({
            "privateKey": private,
            "publicKey": public,
            "fingerprint": key.public_key().fingerprint(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("json serializes")
        );
    } else {
        println!("{}", private.display());
        println!("{}", public.display());
    }
    Ok(())
}
