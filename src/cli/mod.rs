//! Command-line definitions and the commands they run.
