//! BuildKit's protobuf messages, written by hand as prost types: [`pb`] for LLB and
//! [`control`] for the Control service. Only the messages envc sends or reads are here.

pub mod control;
pub mod pb;

pub use pb::op_digest;
