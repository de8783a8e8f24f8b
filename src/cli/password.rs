//! Passwords for private keys: `ENVC_PASSWORD` when set (it may be empty), else a prompt on
//! the terminal that does not echo.

use std::io::IsTerminal as _;
use std::path::Path;

use crate::sign::{Error, Password, PasswordSource};

/// The environment variable that contains the private key's password.
pub const PASSWORD_VARIABLE: &str = "ENVC_PASSWORD";

/// A password source that reads `ENVC_PASSWORD`, or prompts on the terminal.
pub struct EnvOrPrompt;

impl PasswordSource for EnvOrPrompt {
    fn password(&self, key: &Path, confirm: bool) -> Result<Password, Error> {
        if let Some(value) = std::env::var_os(PASSWORD_VARIABLE) {
            return value
                .into_string()
                .map(Password::new)
                .map_err(|_| Error::NoPassword {
                    path: key.to_path_buf(),
                    reason: format!("`{PASSWORD_VARIABLE}` is not valid UTF-8"),
                });
        }
        if !std::io::stdin().is_terminal() {
            return Err(Error::NoPassword {
                path: key.to_path_buf(),
                reason: format!("`{PASSWORD_VARIABLE}` is not set and there is no terminal"),
            });
        }
        let prompt_error = |e: std::io::Error| Error::NoPassword {
            path: key.to_path_buf(),
            reason: format!("failed to read the password from the terminal: {e}"),
        };
        let first = Password::new(
            rpassword::prompt_password(format!("Password for `{}`: ", key.display()))
                .map_err(prompt_error)?,
        );
        if confirm {
            let second = Password::new(
                rpassword::prompt_password("Repeat the password: ").map_err(prompt_error)?,
            );
            if !first.same_as(&second) {
                return Err(Error::NoPassword {
                    path: key.to_path_buf(),
                    reason: "the two passwords differ".to_string(),
                });
            }
        }
        Ok(first)
    }
}
