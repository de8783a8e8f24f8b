/// Errors in resolving, fetching or validating a Feature.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Invalid { message: String, hint: Option<String> },
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::Invalid { .. })
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Invalid { hint, .. } => hint.clone(),
        }
    }
}
