//! Progress events. Domain code sends them through [`Reporter`]; only the CLI draws them.

use std::time::Duration;

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Fetching or unpacking the base image.
    Base { message: String },
    /// Step `index` (0-based) of `total` started running its install script.
    StepStarted {
        index: usize,
        total: usize,
        feature: String,
    },
    /// Step `index` reused a layer; no script ran.
    StepCached {
        index: usize,
        total: usize,
        feature: String,
    },
    /// A line the install script printed.
    StepLog { index: usize, line: String },
    /// Step `index` finished with a layer of `size` compressed bytes. The size is 0 when the
    /// engine does not know it yet, because BuildKit compresses layers only when it exports them.
    StepDone {
        index: usize,
        feature: String,
        duration: Duration,
        size: u64,
    },
    /// Anything else worth a line: pushing, writing, a no-op rebuild.
    Info { message: String },
    /// A problem that did not stop the build but needs the user's attention.
    Warning { message: String },
}

/// Receives progress events. Implementations must be cheap: events come from hot loops.
pub trait Reporter: Send + Sync {
    fn report(&self, event: Event);
}

/// Drops every event.
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: Event) {}
}

/// Keeps every event, for tests.
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Recorder {
    fn report(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}
